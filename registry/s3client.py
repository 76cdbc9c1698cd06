"""The boto3 side of the S3 blob store: the client, conditional and multipart puts, errors.

``registry.s3store`` decides what is stored where (content addressing, conditional puts,
verification); this module only talks to boto3 and turns its errors into the registry's.
boto3 and botocore are imported on first use, never at import.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from registry.errors import CorruptBlobError, StoreUnavailableError
from registry.redaction import redact_text, redact_url

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = [
    "NOT_FOUND",
    "PRECONDITION_FAILED",
    "abort_stale_uploads",
    "build_client",
    "complete_upload",
    "corrupt_error",
    "error_code",
    "put_if_absent",
    "stored_checksum_matches",
    "unavailable_error",
]

NOT_FOUND = frozenset({"404", "NoSuchKey", "NotFound"})
# A conditional put (If-None-Match: *) found the key taken: the same bytes are stored already.
PRECONDITION_FAILED = frozenset({"PreconditionFailed", "412"})
_REFUSED = {"403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "Forbidden"}


def build_client(endpoint_url: str | None, region: str | None) -> S3Client:
    """A boto3 S3 client with retries and timeouts; path-style addressing for a custom
    endpoint (local S3-compatible servers rarely resolve bucket subdomains)."""
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"max_attempts": 5, "mode": "standard"},
        connect_timeout=5,
        read_timeout=120,
        s3={"addressing_style": "path"} if endpoint_url else {},
    )
    return boto3.client("s3", endpoint_url=endpoint_url, region_name=region, config=config)


def put_if_absent(client: S3Client, bucket: str, key: str, data: bytes, hex_digest: str) -> bool:
    """Put ``data`` unless ``key`` exists (``If-None-Match: *``), with its sha256 so that S3
    rejects damaged bytes; False when the key was taken, i.e. the same bytes are stored."""
    try:
        client.put_object(
            Bucket=bucket,
            Key=key,
            Body=data,
            ChecksumSHA256=base64.b64encode(bytes.fromhex(hex_digest)).decode("ascii"),
            IfNoneMatch="*",
            Metadata={"sha256": hex_digest},
        )
    except Exception as exc:
        if error_code(exc) in PRECONDITION_FAILED:
            return False
        raise
    return True


def complete_upload(
    client: S3Client, bucket: str, key: str, upload_id: str, parts: Iterable[memoryview | bytes]
) -> tuple[str | None, str]:
    """Upload ``parts`` and complete the upload unless ``key`` exists; the checksum S3 reports
    for the object and the one expected. Any failure aborts the upload, then propagates."""
    try:
        done, ours = _upload_parts(client, bucket, key, upload_id, parts)
        result = client.complete_multipart_upload(
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={"Parts": done},  # type: ignore[typeddict-item]  # stubs want a narrower literal type
            IfNoneMatch="*",
        )
    except Exception:
        with contextlib.suppress(Exception):
            client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        raise
    return result.get("ChecksumSHA256"), ours


def _upload_parts(
    client: S3Client, bucket: str, key: str, upload_id: str, parts: Iterable[memoryview | bytes]
) -> tuple[list[dict[str, Any]], str]:
    """Upload ``parts``, each with its sha256 checksum (S3 rejects a damaged one); the parts
    list for completion, and S3's checksum of the whole object: the sha256 of the part
    checksums, ``-<parts>``."""
    done: list[dict[str, Any]] = []
    composite = hashlib.sha256()
    for number, part in enumerate(parts, start=1):
        part_digest = hashlib.sha256(part).digest()
        composite.update(part_digest)
        checksum = base64.b64encode(part_digest).decode("ascii")
        answer = client.upload_part(
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            PartNumber=number,
            Body=bytes(part),
            ChecksumSHA256=checksum,
        )
        done.append({"ETag": answer["ETag"], "PartNumber": number, "ChecksumSHA256": checksum})
    return done, f"{base64.b64encode(composite.digest()).decode('ascii')}-{len(done)}"


def abort_stale_uploads(
    client: S3Client, bucket: str, prefix: str, older_than: datetime, *, dry_run: bool
) -> int:
    """Abort (unless ``dry_run``) the multipart uploads under ``prefix`` started before
    ``older_than``; how many there were."""
    found = 0
    answer = client.list_multipart_uploads(Bucket=bucket, Prefix=prefix)
    for upload in answer.get("Uploads", []):
        if upload["Initiated"] <= older_than:
            found += 1
            if not dry_run:
                client.abort_multipart_upload(
                    Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                )
    return found


def stored_checksum_matches(
    client: S3Client, bucket: str, key: str, digest: str, recorded: str | None
) -> bool | None:
    """Whether the sha256 checksum S3 stored for ``key`` is that of ``digest``; for a
    multipart object (a checksum of part checksums, ``...-<parts>``) whether it is
    ``recorded``, the one noted at upload. None when S3 keeps none or there is nothing to
    compare with."""
    head = client.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    stored = head.get("ChecksumSHA256")
    if not stored:
        return None
    if "-" in stored:
        return None if recorded is None else stored == recorded
    return stored == base64.b64encode(bytes.fromhex(digest.removeprefix("sha256:"))).decode()


def error_code(exc: Exception) -> str:
    """The S3 error code of a boto3 ``ClientError`` (``""`` for any other exception)."""
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def unavailable_error(
    exc: Exception, doing: str, *, bucket: str, url: str, endpoint_url: str | None
) -> StoreUnavailableError:
    """What went wrong ``doing`` something at ``url``, said so that the reader can fix it:
    credentials, the bucket, access rights, or the server being unreachable."""
    from botocore.exceptions import ClientError, NoCredentialsError, PartialCredentialsError

    # An endpoint URL may carry credentials (http://key:secret@host): never shown.
    where = redact_url(endpoint_url) if endpoint_url else "AWS"
    url = redact_url(url)
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return StoreUnavailableError(
            f"no S3 credentials for {url}: set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)"
        )
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        if code == "NoSuchBucket":
            return StoreUnavailableError(
                f"S3 bucket {bucket!r} does not exist at {where}: create it or fix RETRAIN_BLOB_URL"
            )
        if code in _REFUSED:
            return StoreUnavailableError(
                f"S3 at {where} refused access to {url} ({code}) while {doing}: "
                "check the credentials and the bucket policy"
            )
        message = redact_text(str(error.get("Message", "")), endpoint_url)
        return StoreUnavailableError(
            f"S3 at {where} failed while {doing}: {code} {message}".strip()
        )
    return StoreUnavailableError(
        f"cannot reach S3 at {where} while {doing} ({type(exc).__name__}): check "
        "RETRAIN_S3_ENDPOINT_URL and that the server is running"
    )


def corrupt_error(digest: str, url: str, actual: str) -> CorruptBlobError:
    """Bytes read for a blob hashed to ``actual``, not its digest. One bad read does not prove
    the object is damaged (a proxy or the network gives the same symptom), so the message sends
    the reader to verify, which re-reads and asks the store's checksum before quarantining."""
    return CorruptBlobError(
        f"blob {digest} in {url} read back as {actual}: corrupt, in the stored object or in "
        "this read; run `retrain registry verify`, which re-reads it to tell which",
        actual=actual,
    )
