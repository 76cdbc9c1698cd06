"""Digests as tables show them: ``sha256:`` and the first 12 hex digits, copyable and short
enough for any terminal; ``--wide`` and ``--json`` show them whole.

Twelve hex digits (48 bits) tell blobs apart in any registry a person lists; a command that
takes a digest (``retrain registry get``) wants the full one, which ``--wide`` prints.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["SHORT_HEX", "short_digest", "shorten_digests"]

SHORT_HEX = 12
_DIGEST = re.compile(r"sha256:([0-9a-f]{64})")


def short_digest(digest: str) -> str:
    """``sha256:<first 12 hex>`` of a full digest; anything else is returned as it is."""
    return _DIGEST.sub(lambda m: "sha256:" + m.group(1)[:SHORT_HEX], digest)


def shorten_digests(value: Any) -> Any:
    """``value`` with every full digest in it (in strings, lists and dicts) shortened."""
    if isinstance(value, str):
        return short_digest(value)
    if isinstance(value, list | tuple):
        return [shorten_digests(item) for item in value]
    if isinstance(value, dict):
        return {key: shorten_digests(item) for key, item in value.items()}
    return value
