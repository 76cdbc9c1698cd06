"""The tabular model's architecture as plain numbers, checked against limits before anything
is built.

A bundle's manifest says how big its network is. Building the network first and comparing
afterwards let one crafted manifest (``hidden_sizes [20000, 20000]``) cost seconds and
gigabytes per load attempt, so the architecture is parsed and its parameters counted here,
arithmetically and without torch, and compared with the limits and with the shapes the weights
file's header declares. Training is held to the same limits (``ModelConfig`` and the
``TabularMLP`` constructor), so the pipeline never trains a model the server would refuse.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ACTIVATIONS",
    "LIMITS",
    "MAX_CATEGORIES",
    "MAX_MANIFEST_BYTES",
    "MAX_WEIGHTS_HEADER_BYTES",
    "Architecture",
    "ArchitectureLimits",
    "weights_problem",
]

ACTIVATIONS = ("relu", "gelu", "silu")


@dataclass(frozen=True)
class ArchitectureLimits:
    """The largest network a bundle may describe (and training may build)."""

    max_hidden_layers: int = 16
    max_width: int = 4096  # units per hidden layer
    max_features: int = 4096  # numeric plus categorical inputs
    max_cardinality: int = 100_001  # embedding rows: the vocabulary plus the unknown bucket
    max_embedding_dim: int = 256
    max_parameters: int = 2**24  # 16.8 M float32 parameters: 64 MiB of weights


LIMITS = ArchitectureLimits()
MAX_CATEGORIES = LIMITS.max_cardinality - 1  # the vocabulary cap that fits max_cardinality
MAX_MANIFEST_BYTES = 16 * 2**20  # vocabularies dominate; real manifests are kilobytes
MAX_WEIGHTS_HEADER_BYTES = 2**20  # the safetensors JSON header: ~100 bytes per tensor

_KEYS = ("class", "n_numeric", "cardinalities", "embedding_dims", "hidden_sizes")
_OPTIONAL = ("dropout", "activation")


def _int(value: object, field: str) -> int:
    if type(value) is not int:  # bool is an int subclass; JSON floats are not counts
        raise ValueError(f"architecture.{field} must be a whole number, not {value!r:.40}")
    return value


def _ints(value: object, field: str) -> tuple[int, ...]:
    if not isinstance(value, list):
        raise ValueError(f"architecture.{field} must be a list of whole numbers")
    return tuple(_int(v, f"{field}[{i}]") for i, v in enumerate(value))


@dataclass(frozen=True)
class Architecture:
    """What ``TabularMLP``'s constructor takes, as plain numbers that can be checked."""

    n_numeric: int
    cardinalities: tuple[int, ...]
    embedding_dims: tuple[int, ...]
    hidden_sizes: tuple[int, ...]
    dropout: float = 0.0
    activation: str = "relu"

    @classmethod
    def from_manifest(cls, raw: object) -> Architecture:
        """Parse a manifest's ``architecture``; ValueError naming the first malformed field."""
        if not isinstance(raw, Mapping):
            raise ValueError("architecture must be an object")
        unknown = sorted(set(raw) - {*_KEYS, *_OPTIONAL})
        missing = [k for k in _KEYS[1:] if k not in raw]
        if unknown or missing:
            field = (unknown or missing)[0]
            raise ValueError(f"architecture.{field} is {'unknown' if unknown else 'missing'}")
        if raw.get("class", "TabularMLP") != "TabularMLP":
            raise ValueError(f"architecture.class {raw['class']!r:.40} is not TabularMLP")
        dropout = raw.get("dropout", 0.0)
        if type(dropout) not in (int, float) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"architecture.dropout must be in [0, 1), not {dropout!r:.40}")
        activation = raw.get("activation", "relu")
        if activation not in ACTIVATIONS:
            raise ValueError(f"architecture.activation must be one of {', '.join(ACTIVATIONS)}")
        return cls(
            n_numeric=_int(raw["n_numeric"], "n_numeric"),
            cardinalities=_ints(raw["cardinalities"], "cardinalities"),
            embedding_dims=_ints(raw["embedding_dims"], "embedding_dims"),
            hidden_sizes=_ints(raw["hidden_sizes"], "hidden_sizes"),
            dropout=float(dropout),
            activation=str(activation),
        )

    def kwargs(self) -> dict[str, Any]:
        """``TabularMLP(**kwargs)``."""
        return {
            "n_numeric": self.n_numeric,
            "cardinalities": self.cardinalities,
            "embedding_dims": self.embedding_dims,
            "hidden_sizes": self.hidden_sizes,
            "dropout": self.dropout,
            "activation": self.activation,
        }

    def problem(self, limits: ArchitectureLimits = LIMITS) -> str | None:
        """What is over a limit or inconsistent, naming the field; None if it may be built.

        Counts are checked before widths and widths before the parameter total, so the work
        done here is bounded by the limits, never by what the manifest claims.
        """
        layers, features = len(self.hidden_sizes), self.n_numeric + len(self.cardinalities)
        checks: list[tuple[bool, str]] = [
            (self.n_numeric < 0, "architecture.n_numeric must not be negative"),
            (
                layers > limits.max_hidden_layers,
                f"architecture.hidden_sizes has {layers} layers, over the limit of "
                f"{limits.max_hidden_layers}",
            ),
            (
                features > limits.max_features,
                f"architecture has {features} input features, over the limit of "
                f"{limits.max_features}",
            ),
            (features == 0, "architecture has no input features"),
            (
                len(self.embedding_dims) != len(self.cardinalities),
                "architecture.embedding_dims needs one width per entry of cardinalities",
            ),
        ]
        for wrong, message in checks:
            if wrong:
                return message
        for field, values, top in (
            ("hidden_sizes", self.hidden_sizes, limits.max_width),
            ("cardinalities", self.cardinalities, limits.max_cardinality),
            ("embedding_dims", self.embedding_dims, limits.max_embedding_dim),
        ):
            for i, value in enumerate(values):
                if not 1 <= value <= top:
                    return f"architecture.{field}[{i}] is {value}, outside 1..{top}"
        count = self.parameter_count()
        if count > limits.max_parameters:
            return (
                f"architecture has {count:,} parameters, over the limit of "
                f"{limits.max_parameters:,}"
            )
        return None

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        """The state dict ``TabularMLP`` would have: tensor name -> shape (call after
        ``problem()`` is None; the shapes are bounded only then)."""
        shapes: dict[str, tuple[int, ...]] = {
            f"embeddings.{i}.weight": (c, d)
            for i, (c, d) in enumerate(zip(self.cardinalities, self.embedding_dims, strict=True))
        }
        width = self.n_numeric + sum(self.embedding_dims)
        # nn.Sequential numbers Linear, activation, Dropout per hidden layer: Linears at 3k.
        for k, hidden in enumerate((*self.hidden_sizes, 1)):
            shapes[f"mlp.{3 * k}.weight"] = (hidden, width)
            shapes[f"mlp.{3 * k}.bias"] = (hidden,)
            width = hidden
        return shapes

    def parameter_count(self) -> int:
        """Parameters of the network, counted without building it."""
        total = sum(c * d for c, d in zip(self.cardinalities, self.embedding_dims, strict=False))
        width = self.n_numeric + sum(self.embedding_dims)
        for hidden in (*self.hidden_sizes, 1):
            total += width * hidden + hidden
            width = hidden
        return total


def weights_problem(weights: bytes, architecture: Architecture) -> str | None:
    """What in a safetensors file's header disagrees with ``architecture``; None if it fits.

    Reads only the header (a little-endian u64 length, then that much JSON), never the tensor
    data: every tensor the network has must be there as float32 with exactly its shape, nothing
    else, and the data section must be exactly as long as those shapes need.
    """
    if len(weights) < 8:
        return "the weights file is too short to be safetensors"
    size = int.from_bytes(weights[:8], "little")
    if size > MAX_WEIGHTS_HEADER_BYTES or 8 + size > len(weights):
        return f"the weights header claims {size:,} bytes (at most {MAX_WEIGHTS_HEADER_BYTES:,})"
    try:
        header = json.loads(weights[8 : 8 + size])
    except ValueError:
        return "the weights header is not JSON"
    if not isinstance(header, dict):
        return "the weights header is not a JSON object"
    header.pop("__metadata__", None)
    expected = architecture.parameter_shapes()
    extra = sorted(set(header) - set(expected))
    if extra:
        return f"weights tensor {extra[0]!r:.60} is not part of the architecture"
    data_bytes = 0
    for name, shape in expected.items():
        entry = header.get(name)
        if not isinstance(entry, dict):
            return f"weights tensor {name!r} is missing"
        found = entry.get("shape")
        if entry.get("dtype") != "F32" or found != list(shape):
            return (
                f"weights tensor {name!r} is {entry.get('dtype')!s:.8} {found!s:.40}; "
                f"the architecture needs F32 {list(shape)}"
            )
        data_bytes += 4 * _product(shape)
    if len(weights) - 8 - size != data_bytes:
        return (
            f"the weights data is {len(weights) - 8 - size:,} bytes; "
            f"the architecture's tensors need {data_bytes:,}"
        )
    return None


def _product(shape: tuple[int, ...]) -> int:
    out = 1
    for n in shape:
        out *= n
    return out
