"""Content addresses: ``sha256:<64 lowercase hex>`` digests and the keys blobs are stored under."""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING

from registry.errors import InvalidDigestError

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "CHUNK_SIZE",
    "DIGEST_PREFIX",
    "blob_key",
    "digest_bytes",
    "digest_file",
    "digest_from_key",
    "digest_hex",
    "digest_of_hash",
    "digests_in",
    "parse_digest",
]

DIGEST_PREFIX = "sha256:"
# 8 MiB: large enough that per-call overhead vanishes, small enough to stay in cache between
# hashing a chunk and writing it out.
CHUNK_SIZE = 8 * 1024 * 1024
_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")
_KEY_RE = re.compile(r"(?:.*/)?sha256/([0-9a-f]{2})/([0-9a-f]{64})")


def parse_digest(value: str) -> str:
    """``value`` if it is a well-formed digest; accepts upper case hex and returns it lowered."""
    candidate = value.strip()
    if candidate[:7].lower() == DIGEST_PREFIX:
        candidate = DIGEST_PREFIX + candidate[7:].lower()
    if not _DIGEST_RE.fullmatch(candidate):
        shown = value if len(value) <= 80 else value[:77] + "..."
        raise InvalidDigestError(
            f"{shown!r} is not a digest: expected 'sha256:' followed by 64 hex digits "
            "(copy it from `retrain registry ls`)"
        )
    return candidate


def digests_in(text: str) -> set[str]:
    """Every well-formed digest written in ``text`` (JSON of a lineage, say)."""
    return set(_DIGEST_RE.findall(text))


def digest_hex(digest: str) -> str:
    """The 64 hex digits of a digest."""
    return parse_digest(digest)[len(DIGEST_PREFIX) :]


def digest_of_hash(hasher: hashlib._Hash) -> str:
    """The digest string of a finished sha256 hasher."""
    return DIGEST_PREFIX + hasher.hexdigest()


def digest_bytes(data: bytes | bytearray | memoryview) -> str:
    """The digest of ``data``."""
    return DIGEST_PREFIX + hashlib.sha256(data).hexdigest()


def digest_file(path: Path) -> str:
    """The digest of a file's bytes, read in chunks."""
    hasher = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_SIZE):
            hasher.update(chunk)
    return digest_of_hash(hasher)


def blob_key(digest: str) -> str:
    """The relative key a blob is stored under: ``sha256/<2 hex>/<64 hex>``."""
    hexdigits = digest_hex(digest)
    return f"sha256/{hexdigits[:2]}/{hexdigits}"


def digest_from_key(key: str) -> str | None:
    """The digest a stored key names, or None for anything else (temp files, strays)."""
    match = _KEY_RE.fullmatch(key)
    if match is None or not match.group(2).startswith(match.group(1)):
        return None
    return DIGEST_PREFIX + match.group(2)
