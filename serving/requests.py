"""Reading a caller's request defensively: the body up to a limit, JSON, predict instances,
feedback labels, request ids and routing keys.

Everything here raises ``InvalidRequestError`` (its ``status`` a 4xx, its ``field`` the part at
fault) before the request reaches a model or a counter, so a refused request leaves no trace.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from registry.errors import InvalidRequestError

__all__ = [
    "Labels",
    "is_finite_number",
    "parse_feedback",
    "parse_instances",
    "parse_json",
    "read_body",
    "request_id",
    "routing_key",
]

# Safe to log, to echo in JSON and to use as a dictionary key; UUIDs and ULIDs fit.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]+")


@dataclass(frozen=True, slots=True)
class Labels:
    """One feedback item: the labels for the answer to ``request_id``."""

    index: int  # position in the request, for error messages
    request_id: str
    labels: list[int | float]


def is_finite_number(value: Any) -> bool:
    """A JSON number that is finite; booleans are not numbers here."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, float) and math.isfinite(value)


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed ``limit`` bytes: a declared
    length is checked before reading, a streamed one chunk by chunk (never read whole)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise InvalidRequestError("Content-Length is not a number", field="body", status=400)
        if int(declared) > limit:
            raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> InvalidRequestError:
    return InvalidRequestError(
        f"body larger than {limit} bytes; send fewer instances per request",
        field="body",
        status=413,
    )


def parse_json(body: bytes) -> Any:
    """The JSON document in ``body``; 400 naming ``body`` when it is not one."""
    try:
        return json.loads(body)
    except RecursionError:  # [[[[...]]]] nested deeper than the parser's stack
        raise InvalidRequestError(
            "request body is nested too deeply", field="body", status=400
        ) from None
    except ValueError:  # also bad UTF-8, and integers longer than 4,300 digits
        raise InvalidRequestError(
            "request body is not valid JSON", field="body", status=400
        ) from None


def parse_instances(payload: Any, max_instances: int) -> list[dict[str, Any]]:
    """The feature objects of a predict request. Each number in them must be finite (JSON's
    ``NaN`` and ``Infinity``, and ``1e400``, are refused here, naming the feature); whether a
    value suits its feature is the model's preprocessing to say."""
    if not isinstance(payload, dict):
        raise InvalidRequestError(
            "body must be a JSON object with 'instances'", field="instances", status=400
        )
    instances = payload.get("instances")
    if not isinstance(instances, list) or not instances:
        raise InvalidRequestError(
            "'instances' must be a non-empty list of feature objects",
            field="instances",
            status=400,
        )
    if len(instances) > max_instances:
        raise InvalidRequestError(
            f"{len(instances)} instances in one request; at most {max_instances}: split the batch",
            field="instances",
        )
    for i, item in enumerate(instances):
        if not isinstance(item, dict):
            raise InvalidRequestError(
                f"instances[{i}] must be an object of feature values", field=f"instances[{i}]"
            )
        for name, value in item.items():
            if isinstance(value, float) and not math.isfinite(value):
                shown = _shorten(name)
                raise InvalidRequestError(
                    f"feature {shown!r} must be a finite number, got {value} (instance {i})",
                    field=shown,
                )
    return instances


def parse_feedback(payload: Any, max_items: int) -> list[Labels]:
    """The items of a feedback request: ``{"feedback": [{request_id, labels}]}`` or one item.
    Labels must be finite numbers; whether they suit the model is checked against the answer."""
    items = payload.get("feedback", [payload]) if isinstance(payload, dict) else None
    if not isinstance(items, list):
        raise InvalidRequestError(
            "'feedback' must be a list of {request_id, labels}",
            field="feedback",
            status=400,
        )
    if len(items) > max_items:
        raise InvalidRequestError(
            f"{len(items)} feedback items in one request; at most {max_items}: split them",
            field="feedback",
        )
    parsed: list[Labels] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("request_id"), str):
            raise InvalidRequestError(
                f"feedback[{i}].request_id must be a string", field="request_id"
            )
        labels = item.get("labels", [item.get("label")])
        if not isinstance(labels, list) or not labels:
            raise InvalidRequestError(
                f"feedback[{i}].labels must be a non-empty list of numbers", field="labels"
            )
        if not all(is_finite_number(v) for v in labels):
            raise InvalidRequestError(
                f"feedback[{i}].labels must be finite numbers (not NaN, Infinity or booleans)",
                field="labels",
            )
        parsed.append(Labels(i, item["request_id"], labels))
    return parsed


def request_id(request: Request, max_chars: int) -> str | None:
    """The caller's ``X-Request-Id``, if any, checked: 1 to ``max_chars`` of letters, digits
    and ``. _ : -``."""
    given = request.headers.get("x-request-id")
    if given is None:
        return None
    if len(given) > max_chars or not _REQUEST_ID.fullmatch(given):
        raise InvalidRequestError(
            f"X-Request-Id must be 1 to {max_chars} letters, digits or . _ : -",
            field="x-request-id",
            status=400,
        )
    return given


def routing_key(request: Request, payload: dict[str, Any], max_chars: int) -> str | None:
    """The sticky routing key: ``X-Request-Key``, else the body's ``request_key`` (a string of
    at most ``max_chars``)."""
    key: Any = request.headers.get("x-request-key")
    field = "x-request-key"
    if key is None:
        key, field = payload.get("request_key"), "request_key"
        if key is None:
            return None
        if not isinstance(key, str):
            raise InvalidRequestError("request_key must be a string", field=field)
    if len(key) > max_chars:
        raise InvalidRequestError(f"{field} is longer than {max_chars} characters", field=field)
    return str(key) or None


def _shorten(name: str) -> str:
    """A caller-supplied name, cut short enough to echo in an error line."""
    return name if len(name) <= 64 else name[:61] + "..."
