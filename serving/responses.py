"""JSON in and out of the model server: compact encoding, error answers, predict requests."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from starlette.responses import Response

from registry.errors import InvalidRequestError

__all__ = ["dumps", "json_response", "parse_instances", "problem"]

# Compact JSON (no spaces after separators) from one encoder, built once at import.
dumps: Callable[[Any], str] = json.JSONEncoder(separators=(",", ":")).encode


def json_response(body: Any, status: int = 200) -> Response:
    """``body`` as compact JSON."""
    return Response(dumps(body), status_code=status, media_type="application/json")


def problem(status: int, message: str, field: str | None = None) -> Response:
    """An error answer: ``{"error": message}``, naming the request ``field`` at fault if any."""
    body: dict[str, Any] = {"error": message}
    if field is not None:
        body["field"] = field
    return json_response(body, status)


def parse_instances(payload: Any) -> list[dict[str, Any]]:
    """The feature objects of a predict request; ``InvalidRequestError`` names what is wrong."""
    if not isinstance(payload, dict):
        raise InvalidRequestError("body must be a JSON object with 'instances'", field="instances")
    instances = payload.get("instances")
    if not isinstance(instances, list) or not instances:
        raise InvalidRequestError(
            "'instances' must be a non-empty list of feature objects", field="instances"
        )
    for i, item in enumerate(instances):
        if not isinstance(item, dict):
            raise InvalidRequestError(
                f"instances[{i}] must be an object of feature values", field=f"instances[{i}]"
            )
    return instances
