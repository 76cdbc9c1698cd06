"""``verify --quarantine`` moves aside only what is proven corrupt: never blobs whose reads a
flaky transport damaged, and nothing at all when too many reads fail at once."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

import boto3
import pytest

from registry.catalog import Catalog
from registry.errors import CorruptBlobError
from registry.localstore import LocalBlobStore
from registry.s3store import S3BlobStore
from registry.store import Registry
from registry.verifying import CORRUPT, STORE_INTACT, UNSTABLE


class _DamagingReader:
    """A file whose reads come back with one byte flipped: somewhere new on every open
    (``random``), or always the first byte (``fixed``), as a bad disk controller, network
    mount or cache might hand them out while the file itself is intact."""

    def __init__(self, handle: BinaryIO, mode: str) -> None:
        self._handle = handle
        self._mode = mode
        self._where = random.randrange(3000) if mode == "random" else 0
        self._offset = 0

    def read(self, size: int = -1) -> bytes:
        chunk = self._handle.read(size)
        start, self._offset = self._offset, self._offset + len(chunk)
        if start <= self._where < self._offset:
            at = self._where - start
            chunk = chunk[:at] + bytes([chunk[at] ^ 0x01]) + chunk[at + 1 :]
        return chunk

    def readinto(self, target: memoryview) -> int:
        chunk = self.read(len(target))
        target[: len(chunk)] = chunk
        return len(chunk)

    def fileno(self) -> int:
        return self._handle.fileno()

    def __enter__(self) -> _DamagingReader:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._handle.close()


def _damage_reads(
    monkeypatch: pytest.MonkeyPatch, store: LocalBlobStore, mode: str, only: set[str] | None = None
) -> list[str]:
    """Make ``store``'s reads damaged (of the digests in ``only``, or all); the digests opened."""
    real_open = store._open
    opened: list[str] = []

    def damaging_open(digest: str) -> Any:
        opened.append(digest)
        handle = real_open(digest)
        return handle if only is not None and digest not in only else _DamagingReader(handle, mode)

    monkeypatch.setattr(store, "_open", damaging_open)
    return opened


@pytest.fixture
def local(tmp_path: Path) -> Iterator[Registry]:
    with Registry.open(f"sqlite:///{tmp_path / 'c.db'}", (tmp_path / "blobs").as_uri()) as reg:
        yield reg


def _put_many(reg: Registry, count: int) -> list[str]:
    return [reg.put_bytes(f"blob {i} ".encode() * 500) for i in range(count)]


def test_a_truly_corrupted_local_blob_is_proven_and_quarantined(local: Registry) -> None:
    digests = _put_many(local, 5)
    store = local.blobs
    assert isinstance(store, LocalBlobStore)
    path = store.path_of(digests[2])
    raw = bytearray(path.read_bytes())
    raw[7] ^= 0x10
    path.write_bytes(bytes(raw))

    report = local.verify(quarantine=True)
    assert [(p.digest, p.problem) for p in report.problems] == [(digests[2], CORRUPT)]
    assert "a second read agrees" in report.problems[0].detail
    assert report.quarantined == [digests[2]] and report.store_suspect is None
    assert not path.exists()
    assert local.put_bytes(b"blob 2 " * 500) == digests[2]  # the re-put restores it
    assert local.verify().ok


def test_reads_that_disagree_are_a_transport_problem_and_nothing_moves(
    local: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    digests = _put_many(local, 20)
    store = local.blobs
    assert isinstance(store, LocalBlobStore)
    flaky = digests[4]
    first_read_only: list[str] = []
    real_open = store._open

    def damaged_once(digest: str) -> Any:  # the first read of one blob comes back damaged
        handle = real_open(digest)
        if digest != flaky or first_read_only:
            return handle
        first_read_only.append(digest)
        return _DamagingReader(handle, "fixed")

    monkeypatch.setattr(store, "_open", damaged_once)
    report = local.verify(quarantine=True)
    assert [(p.digest, p.problem) for p in report.problems] == [(flaky, UNSTABLE)]
    assert "a second read was intact" in report.problems[0].detail
    assert report.quarantined == [] and report.store_suspect is None
    assert store.path_of(flaky).exists()


@pytest.mark.parametrize("mode", ["random", "fixed"])
def test_a_transport_that_damages_every_read_quarantines_nothing(
    local: Registry, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    digests = _put_many(local, 30)
    store = local.blobs
    assert isinstance(store, LocalBlobStore)
    _damage_reads(monkeypatch, store, mode)
    with pytest.raises(CorruptBlobError, match="run `retrain registry verify`") as caught:
        local.get_bytes(digests[0])
    assert "--quarantine" not in str(caught.value)  # one bad read proves nothing

    report = local.verify(quarantine=True)
    assert {p.digest for p in report.problems} == set(digests)
    # Random damage: no two reads agree. Fixed damage: they agree, but 30 of 30 blobs at once
    # is the transport, not rot.
    assert {p.problem for p in report.problems} == {UNSTABLE if mode == "random" else CORRUPT}
    assert report.quarantined == []
    assert report.store_suspect is not None and "30 of 30 blobs" in report.store_suspect
    assert "nothing is quarantined" in report.store_suspect
    monkeypatch.undo()
    assert all(store.path_of(d).exists() for d in digests)
    assert local.verify().ok


def test_a_few_corrupt_blobs_among_many_are_still_quarantined(local: Registry) -> None:
    digests = _put_many(local, 62)
    store = local.blobs
    assert isinstance(store, LocalBlobStore)
    for digest in digests[:3]:  # rot strikes here and there: within the share allowed
        store.path_of(digest).write_bytes(b"rotten")
    report = local.verify(quarantine=True)
    assert sorted(report.quarantined) == sorted(digests[:3]) and report.store_suspect is None


# -- S3 over HTTP: moto behind a proxy that damages the object bytes it relays -----------------
@pytest.fixture
def s3_registry(s3_endpoint: str, s3_bucket: str, tmp_path: Path) -> Iterator[Registry]:
    store = S3BlobStore(s3_bucket, "reg", endpoint_url=s3_endpoint, region="us-east-1")
    with Registry(store, Catalog.open(f"sqlite:///{tmp_path / 'c.db'}")) as reg:
        yield reg


def _through(reg: Registry, endpoint: str) -> Registry:
    """The same bucket and catalog, read through ``endpoint``."""
    assert isinstance(reg.blobs, S3BlobStore)
    store = S3BlobStore(reg.blobs.bucket, "reg", endpoint_url=endpoint, region="us-east-1")
    return Registry(store, reg.catalog)


def _keys(s3_endpoint: str, bucket: str) -> set[str]:
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    return {o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])}


@pytest.mark.s3
@pytest.mark.parametrize("mode", ["random", "fixed"])
def test_s3_reads_damaged_in_transport_move_nothing_aside(
    s3_registry: Registry,
    s3_endpoint: str,
    s3_bucket: str,
    corrupting_s3: Callable[[str], str],
    mode: str,
) -> None:
    digests = [s3_registry.put_bytes(f"healthy object {i}".encode() * 100) for i in range(62)]
    before = _keys(s3_endpoint, s3_bucket)
    flaky = _through(s3_registry, corrupting_s3(mode))
    with pytest.raises(CorruptBlobError) as caught:
        flaky.get_bytes(digests[0])
    assert "--quarantine" not in str(caught.value)

    report = flaky.verify(quarantine=True)
    assert {p.digest for p in report.problems} == set(digests)
    assert report.quarantined == []
    assert report.store_suspect is not None and "62 of 62 blobs" in report.store_suspect
    if mode == "random":
        assert {p.problem for p in report.problems} == {UNSTABLE}
    assert _keys(s3_endpoint, s3_bucket) == before  # all 62 objects where they were
    assert s3_registry.verify().ok  # read directly, every object is intact


def _fake_stored_checksum(reg: Registry, checksums: dict[str, str]) -> None:
    """Have HeadObject report S3's stored ChecksumSHA256 (moto's server leaves it out)."""
    assert isinstance(reg.blobs, S3BlobStore)
    store = reg.blobs
    real_head = store.client.head_object

    def head(**params: Any) -> Any:
        answer = real_head(**params)
        for digest, checksum in checksums.items():
            if params["Key"] == store.key_of(digest) and params.get("ChecksumMode") == "ENABLED":
                answer["ChecksumSHA256"] = checksum
        return answer

    store.client.head_object = head  # type: ignore[method-assign]


@pytest.mark.s3
def test_s3_checksum_decides_between_transport_and_rot(
    s3_registry: Registry, corrupting_s3: Callable[[str], str]
) -> None:
    import base64
    import hashlib

    data = b"champion weights" * 100
    digest = s3_registry.put_bytes(data)
    intact = base64.b64encode(hashlib.sha256(data).digest()).decode()
    flaky = _through(s3_registry, corrupting_s3("fixed"))  # two reads would agree: not enough
    _fake_stored_checksum(flaky, {digest: intact})
    report = flaky.verify(quarantine=True)
    assert [(p.digest, p.problem) for p in report.problems] == [(digest, STORE_INTACT)]
    assert report.quarantined == [] and s3_registry.blobs.exists(digest)

    other = base64.b64encode(hashlib.sha256(b"something else").digest()).decode()
    _fake_stored_checksum(s3_registry, {digest: other})  # S3 itself holds other bytes
    assert isinstance(s3_registry.blobs, S3BlobStore)
    store = s3_registry.blobs
    store.client.put_object(Bucket=store.bucket, Key=store.key_of(digest), Body=b"overwritten")
    report = s3_registry.verify(quarantine=True)
    assert [(p.digest, p.problem) for p in report.problems] == [(digest, CORRUPT)]
    assert "the store's own checksum agrees" in report.problems[0].detail
    assert report.quarantined == [digest] and not store.exists(digest)
