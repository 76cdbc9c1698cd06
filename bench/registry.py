"""Registry throughput: durable put, verified get and re-put of a big blob on the local store,
each as a ratio to plain ``hashlib.sha256`` over the same bytes in the same run; and model
version registrations per second with 8 concurrent writer processes on SQLite and PostgreSQL.

    python bench/registry.py            # 1 GiB blob, 8 x 250 registrations per database
    python bench/registry.py --quick    # 128 MiB blob, 8 x 40 registrations
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from registry.errors import RetrainError
from registry.store import Registry

POSTGRES_ADMIN_URLS = (
    "postgresql+psycopg://postgres@127.0.0.1:5432/test",
    "postgresql+psycopg://root@127.0.0.1:5432/test",
)
GIB = 1024**3


def timed(fn: Callable[[], object]) -> float:
    """Seconds one call of ``fn`` takes."""
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def paired(
    repeats: int,
    data: bytes,
    fn: Callable[[], object],
    before: Callable[[], None] | None = None,
) -> tuple[float, float]:
    """(median seconds of ``fn``, median ratio hash-time / fn-time).

    Each run of ``fn`` is paired with a sha256 of the same bytes timed just before it, so the
    ratio holds up when other work on the machine speeds up or slows down between runs."""
    seconds, ratios = [], []
    for _ in range(repeats):
        hash_s = timed(lambda: hashlib.sha256(data).digest())
        if before is not None:
            before()
        took = timed(fn)
        seconds.append(took)
        ratios.append(hash_s / took)
    return statistics.median(seconds), statistics.median(ratios)


def bench_blobs(size: int, repeats: int) -> list[tuple[str, float, float]]:
    """(what, GB/s, ratio to sha256) for put, verified get and re-put of ``size`` bytes."""
    print(f"generating {size / GIB:.2f} GiB of random bytes ...", flush=True)
    data = os.urandom(size)
    folder = Path(tempfile.mkdtemp(prefix="retrain-bench-"))
    registries: list[Registry] = []

    def fresh_registry() -> None:
        # Each durable put goes to a new, empty registry: the bytes are new to it. The previous
        # one is removed first, as the ceiling run removes its previous file, so that both
        # write into the same disk conditions (this disk slows down once gigabytes pile up).
        for old in registries:
            old.close()
        registries.clear()
        for old_home in folder.glob("r*"):
            shutil.rmtree(old_home, ignore_errors=True)
        home = folder / f"r{time.perf_counter_ns()}"
        registries.append(Registry.open(f"sqlite:///{home / 'catalog.db'}", home.as_uri()))

    def write_and_sync() -> None:
        # What the disk allows: the same bytes written to a new file and fsynced (like a put),
        # with no hashing and no catalog.
        for old in folder.glob("ceiling-*"):
            old.unlink()
        with open(folder / f"ceiling-{time.perf_counter_ns()}", "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())

    try:
        hash_s = statistics.median(
            timed(lambda: hashlib.sha256(data).digest()) for _ in range(repeats)
        )
        rows: list[tuple[str, float, float]] = [("sha256 (baseline)", hash_s, 1.0)]
        rows.append(("write + fsync, no hash", *paired(repeats, data, write_and_sync)))
        for old in folder.glob("ceiling-*"):
            old.unlink()
        put = paired(repeats, data, lambda: registries[0].put_bytes(data), before=fresh_registry)
        rows.append(("durable put", *put))
        reg = registries[0]
        digest = reg.put_bytes(data)
        got: list[bytes] = []
        get = paired(repeats, data, lambda: got.append(reg.get_bytes(digest)), before=got.clear)
        assert got and got[0] == data
        got.clear()
        rows.append(("verified get", *get))
        rows.append(
            ("re-put (already stored)", *paired(repeats, data, lambda: reg.put_bytes(data)))
        )
        reg.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return [(name, size / secs / 1e9, ratio) for name, secs, ratio in rows]


def _writer(url: str, blobs: str, digest: str, count: int, barrier: Any, out: Any) -> None:
    errors = 0
    with Registry.open(url, blobs) as reg:
        barrier.wait()
        for _ in range(count):
            try:
                reg.catalog.register_model_version("bench", digest, metrics={}, lineage={})
            except RetrainError:
                errors += 1
    out.put(errors)


def bench_registrations(url: str, writers: int, per_writer: int) -> tuple[float, int, bool]:
    """(registrations per second, errors, versions gap-free) for ``writers`` processes."""
    folder = Path(tempfile.mkdtemp(prefix="retrain-bench-"))
    try:
        blobs = (folder / "blobs").as_uri()
        with Registry.open(url, blobs) as reg:
            digest = reg.put_bytes(b"bench bundle")
        ctx = multiprocessing.get_context("fork")
        barrier = ctx.Barrier(writers + 1)
        out = ctx.Queue()
        procs = [
            ctx.Process(target=_writer, args=(url, blobs, digest, per_writer, barrier, out))
            for _ in range(writers)
        ]
        for proc in procs:
            proc.start()
        barrier.wait()
        started = time.perf_counter()
        errors = sum(out.get(timeout=600) for _ in procs)
        elapsed = time.perf_counter() - started
        for proc in procs:
            proc.join()
        with Registry.open(url, blobs) as reg:
            versions = [r.version for r in reg.catalog.list_model_versions("bench")]
        gap_free = versions == list(range(1, writers * per_writer + 1))
        return (writers * per_writer - errors) / elapsed, errors, gap_free
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def postgres_database() -> tuple[str, Callable[[], None]] | str:
    """A fresh database URL and its dropper, or why PostgreSQL is not available."""
    from sqlalchemy import create_engine, text

    reasons = []
    for admin_url in POSTGRES_ADMIN_URLS:
        engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        try:
            name = f"retrain_bench_{uuid.uuid4().hex[:8]}"
            with engine.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        except Exception as exc:  # any failure means no usable server
            reasons.append(str(exc).splitlines()[0])
            engine.dispose()
            continue

        def drop(engine: Any = engine, name: str = name) -> None:
            with engine.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            engine.dispose()

        return engine.url.set(database=name).render_as_string(hide_password=False), drop
    return "; ".join(reasons)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small blob, few registrations")
    args = parser.parse_args()
    size = 128 * 1024**2 if args.quick else GIB
    per_writer = 40 if args.quick else 250
    writers = 8

    load = os.getloadavg()[0]
    print(f"cpus: {os.cpu_count()}  load average: {load:.1f}  python: {sys.version.split()[0]}")
    rows = bench_blobs(size, repeats=3 if args.quick else 5)
    print(f"\nlocal blob store, {size / GIB:.3g} GiB blob (medians; ratios paired run by run)")
    print(f"{'operation':<26}{'GB/s':>8}{'x sha256':>10}   target")
    targets = {
        "write + fsync, no hash": "(what the disk allows)",
        "durable put": ">= 0.5 x",
        "verified get": ">= 0.8 x",
        "re-put (already stored)": "time <= 1.1 x hash (ratio >= 0.91)",
    }
    for name, rate, ratio in rows:
        print(f"{name:<26}{rate:>8.2f}{ratio:>10.2f}   {targets.get(name, '')}")

    print(f"\nmodel version registrations, {writers} writer processes x {per_writer}")
    print(f"{'database':<12}{'reg/s':>10}{'errors':>8}{'gap-free':>10}   target")
    with tempfile.TemporaryDirectory(prefix="retrain-bench-") as folder:
        rate, errors, gap_free = bench_registrations(
            f"sqlite:///{folder}/catalog.db", writers, per_writer
        )
    print(f"{'SQLite':<12}{rate:>10.0f}{errors:>8}{gap_free!s:>10}")
    found = postgres_database()
    if isinstance(found, str):
        print(f"{'PostgreSQL':<12}   skipped: no server reachable ({found})")
        return
    url, drop = found
    try:
        rate, errors, gap_free = bench_registrations(url, writers, per_writer)
    finally:
        drop()
    print(f"{'PostgreSQL':<12}{rate:>10.0f}{errors:>8}{gap_free!s:>10}   >= 300 reg/s, 0 errors")


if __name__ == "__main__":
    main()
