"""Digests and the keys blobs are stored under."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from registry.errors import InvalidDigestError
from registry.hashing import blob_key, digest_bytes, digest_file, digest_from_key, parse_digest


def test_digest_is_sha256_of_the_exact_bytes(tmp_path: Path) -> None:
    data = b"loan-default bundle"
    digest = digest_bytes(data)
    assert digest == "sha256:" + hashlib.sha256(data).hexdigest()
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    assert digest_file(path) == digest
    assert digest_bytes(data + b"!") != digest


def test_keys_shard_by_the_first_two_hex_digits() -> None:
    digest = digest_bytes(b"x")
    hexdigits = digest[7:]
    assert blob_key(digest) == f"sha256/{hexdigits[:2]}/{hexdigits}"
    assert digest_from_key(f"prefix/{blob_key(digest)}") == digest
    assert digest_from_key(f"sha256/{hexdigits[:2]}/.tmp-abc") is None
    assert digest_from_key(f"sha256/zz/{hexdigits}") is None  # wrong shard


@pytest.mark.parametrize(
    "text", ["", "sha256:", "sha1:" + "a" * 40, "sha256:" + "g" * 64, "sha256:" + "a" * 65]
)
def test_malformed_digests_are_refused_with_the_expected_form(text: str) -> None:
    with pytest.raises(InvalidDigestError, match="sha256:' followed by 64 hex digits"):
        parse_digest(text)


def test_digest_parsing_normalizes_case_and_whitespace() -> None:
    digest = digest_bytes(b"y")
    assert parse_digest(f"  SHA256:{digest[7:].upper()} ") == digest
