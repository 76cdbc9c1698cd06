"""Worker jobs for the registry's concurrency tests.

The tests fork one process per job (``run_together`` in this folder's conftest); the
kill-mid-put test runs ``python registry_workers.py slow_put ...`` as a real subprocess. Each job
opens its own registry, signals it is ready, waits for the go file so that all workers start
together, does its part and returns (or prints, as JSON) what happened.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from registry.errors import AliasConflictError, RetrainError
from registry.store import Registry


def _wait_for_go(ready: Path, go: Path) -> None:
    ready.touch()
    deadline = time.monotonic() + 120
    while not go.exists():
        if time.monotonic() > deadline:
            raise SystemExit("never told to go")
        time.sleep(0.001)


def register(args: list[str]) -> dict[str, object]:
    db, blobs, model, digest, count, ready, go = args
    with Registry.open(db, blobs) as reg:
        _wait_for_go(Path(ready), Path(go))
        versions, errors = [], []
        for _ in range(int(count)):
            try:
                record = reg.catalog.register_model_version(
                    model, digest, metrics={"auc": 0.5}, lineage={"worker": ready}
                )
                versions.append(record.version)
            except RetrainError as exc:
                errors.append(str(exc))
        return {"versions": versions, "errors": errors}


def open_new(args: list[str]) -> dict[str, object]:
    """Open a database nobody has created yet (all workers at once), then use it."""
    db, blobs, name, ready, go = args
    _wait_for_go(Path(ready), Path(go))
    with Registry.open(db, blobs) as reg:
        digest = reg.put_bytes(name.encode())
        record = reg.catalog.register_model_version("first", digest, metrics={}, lineage={})
        return {"version": record.version}


def put(args: list[str]) -> dict[str, object]:
    db, blobs, payload, threads, ready, go = args
    data = Path(payload).read_bytes()
    digests: list[str] = []
    errors: list[str] = []
    with Registry.open(db, blobs) as reg:
        _wait_for_go(Path(ready), Path(go))

        def one() -> None:
            try:
                digests.append(reg.put_bytes(data))
            except RetrainError as exc:
                errors.append(str(exc))

        workers = [threading.Thread(target=one) for _ in range(int(threads))]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    return {"digests": digests, "errors": errors}


def promote(args: list[str]) -> dict[str, object]:
    db, blobs, model, expected, target, ready, go = args
    with Registry.open(db, blobs) as reg:
        _wait_for_go(Path(ready), Path(go))
        try:
            reg.catalog.set_alias(
                model, "champion", int(target), expected=int(expected), reason="race", actor=ready
            )
        except AliasConflictError as exc:
            return {"outcome": "conflict", "message": str(exc)}
        return {"outcome": "won"}


def slow_put(args: list[str]) -> dict[str, object]:
    """Stream stdin into the store (the test kills this process part-way)."""
    db, blobs = args
    with Registry.open(db, blobs) as reg:
        return {"digest": reg.put_stream(sys.stdin.buffer)}


def s3_partial_put(args: list[str]) -> dict[str, object]:
    """Upload a blob in parts read from stdin (the test kills this process part-way)."""
    from registry.s3store import S3BlobStore

    endpoint, bucket, prefix, digest, size = args
    store = S3BlobStore(bucket, prefix, endpoint_url=endpoint, region="us-east-1")
    part = 5 * 1024 * 1024
    parts = iter(lambda: sys.stdin.buffer.read(part), b"")
    return {"written": store._put_multipart(digest, int(size), parts).written}


JOBS = {
    "open_new": open_new,
    "register": register,
    "put": put,
    "promote": promote,
    "slow_put": slow_put,
    "s3_partial_put": s3_partial_put,
}

if __name__ == "__main__":
    print(json.dumps(JOBS[sys.argv[1]](sys.argv[2:])), flush=True)
