"""Reading an untrusted body: its bytes capped and timed, its JSON bounded before it is parsed.

``read_capped`` takes the bytes: over the cap is a 413 as soon as it is known (by
``Content-Length`` or while streaming), and a body not all there within the timeout is a 408,
so a sender dripping a byte a second cannot hold a request (and its memory) open.

Python's ``json`` alone turns a 5000-digit integer into a ``ValueError`` and 1000 levels of
nesting into a ``RecursionError`` (both were 500s), and it accepts ``NaN``, ``Infinity``, NUL
characters and lone UTF-16 surrogates, which PostgreSQL (NUL, surrogates) or SQLite's driver
(surrogates) refuse only once the alert is being stored. Here each of those is an
``AlertPayloadError`` naming the problem, raised before anything is stored:

- the body must be UTF-8 (RFC 8259), at most ``MAX_DEPTH`` levels deep (checked on the text,
  before the parser recurses), with numbers of at most ``MAX_NUMBER_CHARS`` characters and
  finite (no ``NaN``/``Infinity``, no ``1e999``): 400;
- no string or key anywhere may hold a NUL or a lone surrogate, and no key may be longer than
  ``MAX_KEY_CHARS``: 422 naming the field.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from typing import Any

from starlette.requests import Request

from registry.errors import AlertPayloadError
from retrain.alerts.auth import Refused

__all__ = ["MAX_DEPTH", "MAX_KEY_CHARS", "MAX_NUMBER_CHARS", "read_capped", "read_json_object"]

MAX_DEPTH = 32  # an Alertmanager notification is 4 deep
MAX_NUMBER_CHARS = 32  # any real count, id or share; far below int()'s 4300-digit limit
MAX_KEY_CHARS = 256
_OPENERS_RUN = re.compile(r"[\[{]{" + str(MAX_DEPTH + 1) + "}")
# Possessive: a string is consumed once, with no backtracking whatever its length.
_STRING = re.compile(r'"(?:[^"\\]++|\\.)*+"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]++")
_PAIR = re.compile(r"\[\]|\{\}")
# Raw control characters and raw (UTF-8-encoded) surrogates never get this far (the parser and
# the strict UTF-8 decoding refuse them); these come from \u escapes.
_BAD_TEXT = re.compile("[\x00\ud800-\udfff]")
_BAD_TEXT_HINT = (
    "contains a NUL character or a lone UTF-16 surrogate (\\u0000, \\ud800-\\udfff); "
    "send plain UTF-8 text"
)


async def read_capped(request: Request, limit: int, timeout_s: float) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed ``limit`` bytes, and with
    408 when it has not all arrived ``timeout_s`` after the handler started reading it."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not (declared.isascii() and declared.isdigit() and len(declared) <= 19):
            raise Refused(400, "Content-Length is not a number")
        if int(declared) > limit:
            raise Refused(413, f"body larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    deadline = asyncio.timeout(timeout_s)
    try:
        async with deadline:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise Refused(413, f"body larger than {limit} bytes")
                chunks.append(chunk)
    except TimeoutError:
        if not deadline.expired():
            raise
        raise Refused(
            408, f"body not received within {timeout_s:g} s; send it at once and retry"
        ) from None
    return b"".join(chunks)


def read_json_object(body: bytes) -> dict[str, Any]:
    """``body`` as a JSON object, or ``AlertPayloadError`` (400/422) saying what is wrong."""
    try:
        text = body.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise AlertPayloadError(
            f"body is not UTF-8 (byte {exc.start}): send JSON encoded as UTF-8", status=400
        ) from None
    _check_depth(text)
    try:
        document = json.loads(
            text, parse_int=_integer, parse_float=_real, parse_constant=_no_constant
        )
    except json.JSONDecodeError as exc:
        raise AlertPayloadError(f"body is not JSON: {exc}", status=400) from exc
    if not isinstance(document, dict):
        raise AlertPayloadError("body must be a JSON object", status=400)
    _check_text(document, "")
    return document


def _check_depth(text: str) -> None:
    """Refuse nesting deeper than ``MAX_DEPTH`` without parsing: strings are cut out, then
    innermost ``[]``/``{}`` pairs are peeled off one level per pass."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    if _OPENERS_RUN.search(brackets):  # the usual attack, seen in one scan
        raise _too_deep()
    for depth in range(MAX_DEPTH):
        if not brackets:
            return
        brackets, peeled = _PAIR.subn("", brackets)
        if not peeled:
            # Unbalanced: not JSON. If it cannot be deep, the parser says precisely where.
            if depth + brackets.count("[") + brackets.count("{") <= MAX_DEPTH:
                return
            raise AlertPayloadError("body is not JSON: its brackets do not match", status=400)
    if brackets:
        raise _too_deep()


def _too_deep() -> AlertPayloadError:
    return AlertPayloadError(
        f"body is nested deeper than {MAX_DEPTH} levels; send a flatter document", status=400
    )


def _integer(literal: str) -> int:
    return int(_sized(literal))


def _real(literal: str) -> float:
    value = float(_sized(literal))
    if not math.isfinite(value):
        raise AlertPayloadError(
            f"body has a number too large for a float ({literal}); send a finite number",
            status=400,
        )
    return value


def _sized(literal: str) -> str:
    if len(literal) > MAX_NUMBER_CHARS:
        raise AlertPayloadError(
            f"body has a number longer than {MAX_NUMBER_CHARS} characters; send it as a string",
            status=400,
        )
    return literal


def _no_constant(name: str) -> Any:
    raise AlertPayloadError(
        f"body has {name}, which is not JSON; send a finite number or null", status=400
    )


def _check_text(value: Any, path: str) -> None:
    """Refuse NUL characters, lone surrogates and over-long keys anywhere in ``value``."""
    if isinstance(value, str):
        if _BAD_TEXT.search(value):
            raise AlertPayloadError(f"{path or 'body'}: {_BAD_TEXT_HINT}")
    elif isinstance(value, dict):
        for key, item in value.items():
            if len(key) > MAX_KEY_CHARS:
                raise AlertPayloadError(
                    f"{path or 'body'}: a key is longer than {MAX_KEY_CHARS} characters"
                )
            if _BAD_TEXT.search(key):
                raise AlertPayloadError(f"{path or 'body'}: a key {_BAD_TEXT_HINT}")
            _check_text(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_text(item, f"{path}[{index}]")
