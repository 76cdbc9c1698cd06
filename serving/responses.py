"""JSON out of the model server: compact encoding that never writes NaN, error answers."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any

from starlette.responses import Response

from registry.errors import InvalidRequestError

__all__ = ["dumps", "json_response", "problem", "refusal"]

# Compact JSON (no spaces after separators) from one encoder, built once at import. It refuses
# NaN and Infinity (not JSON: strict parsers reject the whole document) instead of writing them.
_encode: Callable[[Any], str] = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


def dumps(body: Any) -> str:
    """``body`` as compact JSON; a non-finite float anywhere in it is written as ``null``."""
    try:
        return _encode(body)
    except ValueError:  # rare: a statistic went non-finite; walk only then
        return _encode(_finite(body))


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def json_response(body: Any, status: int = 200) -> Response:
    """``body`` as compact JSON."""
    return Response(dumps(body), status_code=status, media_type="application/json")


def problem(
    status: int, message: str, field: str | None = None, headers: Mapping[str, str] | None = None
) -> Response:
    """An error answer: ``{"error": message}``, naming the request ``field`` at fault if any."""
    body: dict[str, Any] = {"error": message}
    if field is not None:
        body["field"] = field
    response = json_response(body, status)
    response.headers.update(headers or {})
    return response


def refusal(exc: InvalidRequestError) -> Response:
    """The answer to a refused request: its 4xx, one line, the field at fault."""
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return problem(exc.status, str(exc), exc.field, headers)
