"""Reading spec text: YAML that refuses duplicate keys, and validation errors as one line.

``describe_first_error`` turns a pydantic ``ValidationError`` into ``field.path: message``
(unknown fields get a "did you mean" hint), which is what a user reads after ``spec <file>:``
and what an alert sender reads in a 422. ``MODEL_NAME_PATTERN`` is the rule a model's name
follows, in a spec and in an alert alike (this module stays light for the alert receiver).
"""

from __future__ import annotations

import difflib
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

__all__ = ["MODEL_NAME_PATTERN", "UniqueKeyLoader", "describe_first_error"]

# Deployment names, Kubernetes labels and Prefect resource ids are all built from the name.
MODEL_NAME_PATTERN = r"^[a-z][a-z0-9-]{0,46}[a-z0-9]$"


def describe_first_error(exc: ValidationError, root: type[BaseModel]) -> str:
    """The first validation error as ``field.path: message``, noting how many more there are."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    loc = tuple(first["loc"])
    path = _dotted(loc)
    message = str(first["msg"]).removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown field" + _suggestion(root, loc)
    elif first["type"] == "missing":
        message = "required field is missing"
    elif first["type"] != "value_error" and "input" in first and _short(first["input"]):
        message += f" (got {first['input']!r})"
    line = f"{path}: {message}" if path else message
    if len(errors) > 1:
        more = len(errors) - 1
        line += f" (and {more} more problem{'s' if more > 1 else ''})"
    return line


def _dotted(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _short(value: Any) -> bool:
    return isinstance(value, str | int | float | bool) and len(repr(value)) <= 40


def _suggestion(root: type[BaseModel], loc: tuple[int | str, ...]) -> str:
    """`` (did you mean 'x'?)`` for a misspelt field, found by walking the models from ``root``."""
    model: Any = root
    for part in loc[:-1]:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return ""
        model = field.annotation
    names = list(getattr(model, "model_fields", {}))
    close = difflib.get_close_matches(str(loc[-1]), names, n=1)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" (known: {', '.join(names)})" if names else ""


class UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses duplicate keys instead of silently keeping the last."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node)


UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)
