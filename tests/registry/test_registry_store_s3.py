"""The S3 blob store over real HTTP against moto's server."""

from __future__ import annotations

import base64
import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from registry.blobstore import open_blob_store
from registry.errors import BlobNotFoundError, CorruptBlobError, StoreUnavailableError
from registry.hashing import digest_bytes
from registry.records import StoredBlob
from registry.s3store import S3BlobStore
from registry.store import Registry

pytestmark = pytest.mark.s3

WORKERS = Path(__file__).with_name("registry_workers.py")


@pytest.fixture
def store(s3_endpoint: str, s3_bucket: str) -> Iterator[S3BlobStore]:
    opened = S3BlobStore(
        s3_bucket,
        "team/registry",
        endpoint_url=s3_endpoint,
        region="us-east-1",
        multipart_threshold=6 * 1024 * 1024,
        part_size=5 * 1024 * 1024,
    )
    yield opened
    opened.close()


@pytest.fixture
def s3_registry(store: S3BlobStore, tmp_path: Path) -> Iterator[Registry]:
    from registry.catalog import Catalog

    reg = Registry(store, Catalog.open(f"sqlite:///{tmp_path / 'catalog.db'}"))
    yield reg
    reg.close()


def test_round_trip_and_conditional_re_put(s3_registry: Registry, store: S3BlobStore) -> None:
    data = b"champion bundle"
    digest = s3_registry.put_bytes(data)
    assert digest == digest_bytes(data)
    assert s3_registry.get_bytes(digest) == data
    assert store.put_bytes(data) == StoredBlob(digest, len(data), written=False)  # 412
    assert s3_registry.put_bytes(data) == digest
    assert [b.digest for b in s3_registry.blobs.list()] == [digest]
    head = store.client.head_object(Bucket=store.bucket, Key=store.key_of(digest))
    assert head["Metadata"]["sha256"] == digest.removeprefix("sha256:")
    assert store.key_of(digest).startswith("team/registry/sha256/")


def test_large_blob_goes_up_in_parts_with_whole_sha256_in_sql(
    s3_registry: Registry, store: S3BlobStore, tmp_path: Path
) -> None:
    data = os.urandom(12 * 1024 * 1024 + 3)
    source = tmp_path / "big.bin"
    source.write_bytes(data)
    digest = s3_registry.put_file(source)
    assert digest == digest_bytes(data)
    record = s3_registry.catalog.get_blob(digest)
    assert record is not None and record.size == len(data)
    assert record.store_checksum is not None and record.store_checksum.endswith("-3")
    target = tmp_path / "back.bin"
    s3_registry.get_to_file(digest, target)
    assert target.read_bytes() == data
    assert s3_registry.put_bytes(data) == digest  # already there: no second upload
    assert s3_registry.verify().ok


def test_put_sends_the_sha256_checksum_and_is_conditional(store: S3BlobStore) -> None:
    sent: list[dict[str, str]] = []

    def capture(request: Any, **_: Any) -> None:
        sent.append(
            {
                k.lower(): v.decode() if isinstance(v, bytes) else str(v)
                for k, v in request.headers.items()
            }
        )

    store.client.meta.events.register("before-send.s3.PutObject", capture)
    data = b"weights"
    store.put_bytes(data)
    expected = base64.b64encode(hashlib.sha256(data).digest()).decode()
    assert sent[0]["x-amz-checksum-sha256"] == expected
    assert sent[0]["if-none-match"] == "*"


def test_overwritten_object_is_refused_and_reported(
    s3_registry: Registry, store: S3BlobStore
) -> None:
    digest = s3_registry.put_bytes(b"good weights")
    store.client.put_object(Bucket=store.bucket, Key=store.key_of(digest), Body=b"bad weights")
    with pytest.raises(CorruptBlobError):
        s3_registry.get_bytes(digest)
    report = s3_registry.verify(quarantine=True)
    assert [(p.digest, p.problem) for p in report.problems] == [(digest, "corrupt")]
    assert s3_registry.put_bytes(b"good weights") == digest  # restored after quarantine
    assert s3_registry.get_bytes(digest) == b"good weights"


def test_missing_object_and_gc_of_orphans(s3_registry: Registry, store: S3BlobStore) -> None:
    with pytest.raises(BlobNotFoundError):
        s3_registry.get_bytes(digest_bytes(b"never"))
    kept = s3_registry.put_bytes(b"kept")
    orphan = store.put_bytes(b"orphan").digest  # a blob whose row never got written
    assert s3_registry.gc(timedelta(hours=1), dry_run=False).collected == []
    report = s3_registry.gc(timedelta(0), dry_run=False)
    assert [b.digest for b in report.collected] == [orphan]
    assert not store.exists(orphan) and store.exists(kept)


def test_unreachable_endpoint_is_one_clear_line() -> None:
    store = open_blob_store("s3://bucket/prefix", s3_endpoint_url="http://127.0.0.1:9")
    assert isinstance(store, S3BlobStore)
    store.client.meta.config.retries = {"max_attempts": 1}
    with pytest.raises(StoreUnavailableError, match="cannot reach S3") as caught:
        store.put_bytes(b"x")
    assert "\n" not in str(caught.value)


def test_missing_bucket_names_the_bucket(s3_endpoint: str) -> None:
    store = S3BlobStore("no-such-bucket-here", endpoint_url=s3_endpoint, region="us-east-1")
    with pytest.raises(StoreUnavailableError, match="no-such-bucket-here"):
        store.put_bytes(b"x")


def test_registry_open_with_an_s3_url(s3_endpoint: str, s3_bucket: str, tmp_path: Path) -> None:
    reg = Registry.open(
        f"sqlite:///{tmp_path / 'c.db'}",
        f"s3://{s3_bucket}/p",
        s3_endpoint_url=s3_endpoint,
        s3_region="us-east-1",
    )
    with reg:
        digest = reg.put_bytes(b"via open")
        assert reg.get_bytes(digest) == b"via open"
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert keys == [f"p/sha256/{digest[7:9]}/{digest[7:]}"]


def test_writer_killed_mid_upload_leaves_nothing_under_the_final_key(
    s3_registry: Registry, store: S3BlobStore, s3_endpoint: str
) -> None:
    part = 5 * 1024 * 1024
    data = os.urandom(3 * part)
    digest = digest_bytes(data)
    proc = subprocess.Popen(
        [
            sys.executable,
            str(WORKERS),
            "s3_partial_put",
            s3_endpoint,
            store.bucket,
            store.prefix,
            digest,
            str(len(data)),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None
    proc.stdin.write(data[: 2 * part])  # two parts; the third never comes
    proc.stdin.flush()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        uploads = store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", [])
        if uploads and store.client.list_parts(
            Bucket=store.bucket, Key=uploads[0]["Key"], UploadId=uploads[0]["UploadId"]
        ).get("Parts"):
            break
        time.sleep(0.05)
    else:
        proc.kill()
        raise AssertionError(proc.communicate()[1][-2000:])
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)

    assert not store.exists(digest)
    with pytest.raises(BlobNotFoundError):
        s3_registry.get_bytes(digest)
    # moto reports every upload as initiated in 2010, so only the cleanup itself is checked.
    assert s3_registry.gc(timedelta(0)).stale_temp_files == 1  # dry run: reported, kept
    assert store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads")
    assert s3_registry.gc(timedelta(0), dry_run=False).stale_temp_files == 1
    assert store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", []) == []
