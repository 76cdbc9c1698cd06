"""The local blob store through the Registry: round trips, corruption, crashes and gc."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from registry.errors import (
    BlobNotFoundError,
    ConfigError,
    CorruptBlobError,
    DatabaseUnavailableError,
    InvalidDigestError,
)
from registry.hashing import blob_key, digest_bytes, parse_digest
from registry.localstore import LocalBlobStore
from registry.store import Registry

WORKERS = Path(__file__).with_name("registry_workers.py")


def _store(reg: Registry) -> LocalBlobStore:
    assert isinstance(reg.blobs, LocalBlobStore)
    return reg.blobs


def _age(path: Path, hours: float) -> None:
    """Pretend ``path`` was written ``hours`` ago."""
    then = time.time() - hours * 3600
    os.utime(path, (then, then))


def test_same_bytes_give_one_digest_one_file_one_row(registry: Registry) -> None:
    data = b"loan book snapshot"
    first = registry.put_bytes(data, media_type="text/plain")
    second = registry.put_bytes(data)
    assert first == second == digest_bytes(data)
    assert registry.get_bytes(first) == data
    assert [b.digest for b in registry.catalog.list_blobs()] == [first]
    assert [b.digest for b in registry.blobs.list()] == [first]
    assert _store(registry).path_of(first).relative_to(_store(registry).root) == Path(
        blob_key(first)
    )


def test_put_file_streams_to_the_same_digest(registry: Registry, tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    source = tmp_path / "bundle.bin"
    source.write_bytes(data)
    digest = registry.put_file(source)
    assert digest == digest_bytes(data)
    target = tmp_path / "copy.bin"
    registry.get_to_file(digest, target)
    assert target.read_bytes() == data
    assert registry.put_bytes(data) == digest


def test_big_blob_round_trip_uses_the_pipelined_verified_read(registry: Registry) -> None:
    data = os.urandom(20 * 1024 * 1024 + 5)  # above the threaded-read threshold
    digest = registry.put_bytes(data)
    assert registry.get_bytes(digest) == data
    path = _store(registry).path_of(digest)
    with path.open("r+b") as handle:  # one flipped byte in the last chunk, same size
        handle.seek(len(data) - 2)
        handle.write(bytes([data[-2] ^ 0x01]))
    with pytest.raises(CorruptBlobError, match="corrupt"):
        registry.get_bytes(digest)


def test_flipped_byte_is_refused_and_reported_by_verify(registry: Registry, tmp_path: Path) -> None:
    digest = registry.put_bytes(b"model weights " * 1000)
    path = _store(registry).path_of(digest)
    raw = bytearray(path.read_bytes())
    raw[100] ^= 0x01
    path.write_bytes(bytes(raw))

    with pytest.raises(CorruptBlobError, match="corrupt"):
        registry.get_bytes(digest)
    target = tmp_path / "out.bin"
    with pytest.raises(CorruptBlobError):
        registry.get_to_file(digest, target)
    assert not target.exists()
    assert list(tmp_path.glob(".tmp-*")) == []

    report = registry.verify()
    assert not report.ok
    assert [(p.digest, p.problem) for p in report.problems] == [(digest, "corrupt")]

    registry.verify(quarantine=True)  # moved aside: now missing until the bytes come back
    assert [p.problem for p in registry.verify().problems] == ["missing"]
    assert registry.put_bytes(b"model weights " * 1000) == digest
    assert registry.verify().ok
    assert registry.get_bytes(digest) == b"model weights " * 1000


def test_missing_blob_is_reported_by_verify(registry: Registry) -> None:
    kept = registry.put_bytes(b"kept")
    lost = registry.put_bytes(b"lost")
    _store(registry).path_of(lost).unlink()
    report = registry.verify()
    assert report.checked == 2
    assert [(p.digest, p.problem) for p in report.problems] == [(lost, "missing")]
    assert registry.get_bytes(kept) == b"kept"
    with pytest.raises(BlobNotFoundError):
        registry.get_bytes(lost)


@pytest.mark.parametrize("bad", ["", "sha256:xyz", "md5:" + "a" * 32, "sha256:" + "a" * 63])
def test_malformed_digest_is_one_clear_line(registry: Registry, bad: str) -> None:
    with pytest.raises(InvalidDigestError) as caught:
        registry.get_bytes(bad)
    assert "\n" not in str(caught.value)
    assert "64 hex digits" in str(caught.value)


def test_upper_case_digest_is_accepted(registry: Registry) -> None:
    digest = registry.put_bytes(b"x")
    assert parse_digest(digest.upper().replace("SHA256", "sha256")) == digest
    assert registry.get_bytes(digest.upper()) == b"x"


def test_failed_commit_leaves_no_row_and_gc_collects_the_orphan_only_after_grace(
    reg: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    kept = reg.put_bytes(b"referenced")
    real_commit = Session.commit

    def failing_commit(self: Session) -> None:
        raise OperationalError("COMMIT", {}, Exception("disk I/O error"))

    monkeypatch.setattr(Session, "commit", failing_commit)
    with pytest.raises(DatabaseUnavailableError, match="disk I/O error"):
        reg.put_bytes(b"orphan")
    monkeypatch.setattr(Session, "commit", real_commit)

    orphan = digest_bytes(b"orphan")
    assert reg.catalog.get_blob(orphan) is None  # no row without (or before) a blob
    assert reg.blobs.exists(orphan)
    assert reg.verify().orphans == [orphan]

    young = reg.gc(timedelta(hours=24), dry_run=False)
    assert young.collected == [] and young.kept_young == 2
    assert reg.blobs.exists(orphan)

    for digest in (kept, orphan):
        _age(_store(reg).path_of(digest), hours=25)
    dry = reg.gc(timedelta(hours=24))
    assert [b.digest for b in dry.collected] == [orphan]
    assert reg.blobs.exists(orphan)

    done = reg.gc(timedelta(hours=24), dry_run=False)
    assert [b.digest for b in done.collected] == [orphan]
    assert not reg.blobs.exists(orphan)
    assert reg.get_bytes(kept) == b"referenced"
    assert reg.verify().ok


def test_re_put_replaces_a_truncated_blob(registry: Registry) -> None:
    digest = registry.put_bytes(b"complete bytes")
    _store(registry).path_of(digest).write_bytes(b"compl")
    assert registry.put_bytes(b"complete bytes") == digest
    assert registry.get_bytes(digest) == b"complete bytes"


def test_re_put_after_collection_restores_the_blob(registry: Registry) -> None:
    digest = registry.put_bytes(b"again")
    _store(registry).path_of(digest).unlink()
    assert registry.put_bytes(b"again") == digest
    assert registry.get_bytes(digest) == b"again"


def test_writer_killed_mid_put_leaves_nothing_under_the_final_key(
    settings_urls: tuple[str, str], tmp_path: Path
) -> None:
    database_url, blob_url = settings_urls
    proc = subprocess.Popen(
        [sys.executable, str(WORKERS), "slow_put", database_url, blob_url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None
    chunk = os.urandom(1024 * 1024)
    for _ in range(12):  # more than one write chunk, but never the end of the stream
        proc.stdin.write(chunk)
    proc.stdin.flush()
    blobs = Path(blob_url.removeprefix("file://"))
    deadline = time.monotonic() + 60
    while not list(blobs.glob("sha256/.tmp-*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # let it write part of what it was given
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)

    with Registry.open(database_url, blob_url) as reg:
        assert list(reg.blobs.list()) == []
        assert reg.catalog.list_blobs() == []
        leftovers = list(blobs.glob("sha256/.tmp-*"))
        assert leftovers, "the killed writer's partial temp file should still be there"
        for temp in leftovers:
            _age(temp, hours=25)
        assert reg.gc(timedelta(hours=24), dry_run=False).stale_temp_files == len(leftovers)
        assert list(blobs.glob("sha256/.tmp-*")) == []


@pytest.fixture
def settings_urls(tmp_path: Path) -> tuple[str, str]:
    return f"sqlite:///{tmp_path / 'catalog.db'}", (tmp_path / "blobs").as_uri()


def test_gc_between_blob_and_row_makes_the_put_store_the_bytes_again(
    reg: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _store(reg)
    real_put = store.put_bytes
    collected: list[int] = []

    def put_then_collect(data: bytes, **hints: bool) -> object:
        stored = real_put(data, **hints)
        if not collected:  # gc runs in the gap between the blob write and the row
            collected.append(len(reg.gc(timedelta(0), dry_run=False).collected))
        return stored

    monkeypatch.setattr(store, "put_bytes", put_then_collect)
    digest = reg.put_bytes(b"raced with gc")
    assert collected == [1]
    assert reg.catalog.get_blob(digest) is not None
    assert reg.get_bytes(digest) == b"raced with gc"


def test_fresh_hint_hashes_while_writing_and_still_dedups(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    data = os.urandom(17 * 1024 * 1024)  # above the size where hashing runs beside the write
    first = store.put_bytes(data, fresh=True)
    again = store.put_bytes(data, fresh=True)  # a wrong hint costs a write, never a duplicate
    assert first.written and not again.written
    assert first.digest == again.digest == digest_bytes(data)
    assert store.get_bytes(first.digest) == data
    assert [b.digest for b in store.list()] == [first.digest]
    assert list(store.root.glob("sha256/**/.tmp-*")) == []


def test_a_writer_waits_for_a_held_sqlite_lock_instead_of_failing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    with Registry.open(url, (tmp_path / "blobs").as_uri()) as reg:
        digest = reg.put_bytes(b"bundle")
        blocker = sqlite3.connect(
            tmp_path / "catalog.db", isolation_level=None, check_same_thread=False
        )
        blocker.execute("BEGIN IMMEDIATE")  # another process holding the write lock
        release = threading.Timer(1.0, blocker.execute, args=("COMMIT",))
        release.start()
        started = time.monotonic()
        record = reg.catalog.register_model_version("m", digest, metrics={}, lineage={})
        waited = time.monotonic() - started
        release.join()
        blocker.close()
    assert record.version == 1
    assert waited >= 0.9


@pytest.mark.parametrize("unnamed", [True, False], ids=["O_TMPFILE", "unlinked-temp"])
def test_get_to_file_shows_nothing_until_the_bytes_are_verified(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unnamed: bool
) -> None:
    from registry.localfiles import staged_file

    if not unnamed:  # a filesystem (or system) without O_TMPFILE
        monkeypatch.delattr(os, "O_TMPFILE", raising=False)
    out = tmp_path / "out"
    out.mkdir()
    target = out / "model.bin"
    with staged_file(target) as staged:
        os.write(staged.fd, b"unverified")
        assert list(out.iterdir()) == []  # not at, nor beside, the destination
    assert list(out.iterdir()) == []  # never committed: gone

    digest = registry.put_bytes(b"verified weights")
    target.write_bytes(b"an older, longer file in the way")
    registry.get_to_file(digest, target)
    assert target.read_bytes() == b"verified weights"
    assert list(out.iterdir()) == [target]
    with pytest.raises(ConfigError, match="is a folder"):
        registry.get_to_file(digest, out)
