"""Keeping credentials out of error lines: the one place URLs and driver messages are scrubbed.

A database or endpoint URL may carry a password (``postgresql://user:pass@host/db``,
``?password=...``, a presigned ``X-Amz-Signature``); error messages name the URL so the reader
can fix it, so every URL shown in a registry error passes through ``redact_url`` and every
message quoted from a driver or SDK through ``redact_text``.
"""

from __future__ import annotations

import re
from urllib.parse import SplitResult, parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

__all__ = ["REDACTED", "redact_text", "redact_url"]

REDACTED = "***"

# Query parameters that carry credentials (compared lower-case, as substrings).
_SECRET_KEYS = (
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "signature",
    "credential",
    "key",
    "auth",
)
# scheme://user:password@ in free text (also when the rest of the URL does not parse).
# The password runs to the last "@" before the host (an unescaped "@" may be part of it).
_USERINFO = re.compile(
    r"(?P<head>(?:[A-Za-z][A-Za-z0-9+.\-]*)?://[^\s:/@'\"]*):(?P<pw>[^\s/'\"]*)@"
)
_LOOSE_USERINFO = re.compile(
    r"(?P<head>^(?:[A-Za-z][A-Za-z0-9+.\-]*)?://[^\s:/@]*):(?P<pw>[^\s@]*)@"
)
# key=value pairs (libpq DSNs, query strings) whose key names a credential.
_PAIR = re.compile(
    r"(?P<key>\b[A-Za-z0-9_\-]*(?:" + "|".join(_SECRET_KEYS) + r")[A-Za-z0-9_\-]*)"
    r"(?P<eq>\s*=\s*)(?P<value>'[^']*'|\"[^\"]*\"|[^\s&;,'\"()]+)",
    re.IGNORECASE,
)


def _is_secret_key(key: str) -> bool:
    lowered = key.lower()
    return any(word in lowered for word in _SECRET_KEYS)


def _split(url: str) -> SplitResult | None:
    """``url`` split, or None when its netloc is malformed, e.g. when an unescaped "/" in a
    password ends it early, leaving a "port" that is no number."""
    try:
        parts = urlsplit(url)
        _ = parts.hostname, parts.port
    except ValueError:
        return None
    return parts


def _scrub_userinfo(url: str) -> str:
    return _LOOSE_USERINFO.sub(lambda m: f"{m['head']}:{REDACTED}@", url, count=1)


def redact_url(url: str) -> str:
    """``url`` with any password in its userinfo and any credential in its query replaced by
    ``***`` (the user name, host, path and other parameters are kept: they help find a typo)."""
    parts = _split(url)
    if parts is None:
        return redact_text(_scrub_userinfo(url))
    netloc = parts.netloc
    if parts.password is not None and parts.hostname is not None:
        netloc = f"{parts.username or ''}:{REDACTED}@" + netloc.rpartition("@")[2]
    query = parts.query
    pairs = parse_qsl(query, keep_blank_values=True)
    if any(_is_secret_key(key) for key, _ in pairs):
        query = urlencode([(k, REDACTED if _is_secret_key(k) else v) for k, v in pairs], safe="*/:")
    if (netloc, query) != (parts.netloc, parts.query):
        # Rebuilt only when changed: that could respell it (``sqlite:////abs`` loses a slash).
        url = urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    return redact_text(url)  # what parsing missed (e.g. no scheme: ``://user:pw@``)


def _secrets_of(url: str) -> set[str]:
    """The credentials ``url`` carries (its password, secret query values), as they may appear
    in a driver's message: as written and decoded."""
    found: list[str] = []
    parts = _split(url)
    loose = _LOOSE_USERINFO.search(url) if parts is None else None
    password = parts.password if parts is not None else (loose["pw"] if loose else None)
    if password:
        found += [password, unquote(password)]
    for pair in _PAIR.finditer(url):
        value = pair["value"].strip("'\"")
        found += [value, unquote(value), quote(unquote(value), safe="")]
    return {s for s in found if s and s != REDACTED}


def redact_text(text: str, *urls: str | None) -> str:
    """``text`` (e.g. a driver's message) with URL passwords and credential ``key=value`` pairs
    replaced by ``***``, and so every credential that ``urls`` carry, wherever it stands as a
    word of its own."""
    text = _USERINFO.sub(lambda m: f"{m['head']}:{REDACTED}@", text)
    text = _PAIR.sub(lambda m: f"{m['key']}{m['eq']}{REDACTED}", text)
    secrets = set().union(*(_secrets_of(url) for url in urls if url))
    for secret in sorted(secrets, key=len, reverse=True):  # longest first: no partial leftovers
        # Only where it is not part of a longer word: a password "pass" must not turn
        # "password authentication failed" into nonsense.
        text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])", REDACTED, text)
    return text
