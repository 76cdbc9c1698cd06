"""Fault injection for demos, tests and benchmarks: make one served version misbehave on purpose.

A fault wraps a real, loaded bundle inside the server; nothing about the canary analysis is
mocked. Disabled unless the server is created with a ``FaultInjector`` and a fault is set.
Errors are spread evenly (an accumulator, not a coin) so "5% errors" is exactly 5%.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from registry.errors import ConfigError

__all__ = ["FaultInjector", "FaultSpec", "InjectedFaultError", "parse_fault"]


class InjectedFaultError(RuntimeError):
    """Raised in place of a prediction by an injected fault (counts as a server error)."""


@dataclass
class FaultSpec:
    """How a version misbehaves: errors, added latency, shifted predictions, or a crash."""

    error_rate: float = 0.0  # fraction of requests that fail, spread evenly
    extra_latency_s: float = 0.0  # added before every prediction
    prediction_shift: float = 0.0  # added to every prediction
    crash: bool = False  # every prediction raises, like a bundle that crashes on predict
    _due: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.error_rate <= 1.0:
            raise ConfigError(f"fault error_rate must be within [0, 1], got {self.error_rate}")
        if self.extra_latency_s < 0:
            raise ConfigError(f"fault latency must be >= 0 s, got {self.extra_latency_s}")

    def check(self) -> None:
        """Raise ``InjectedFaultError`` when this request is one of the failing ones."""
        if self.crash:
            raise InjectedFaultError("injected fault: bundle crashed on predict")
        if self.error_rate > 0.0:
            self._due += self.error_rate
            if self._due >= 1.0:
                self._due -= 1.0
                raise InjectedFaultError("injected fault: prediction failed")


class FaultInjector:
    """Faults per (model, version); the server asks it before and after every prediction."""

    def __init__(self) -> None:
        self._faults: dict[tuple[str, int], FaultSpec] = {}

    def set(self, model: str, version: int, spec: FaultSpec) -> None:
        """Make ``model`` version ``version`` misbehave as ``spec`` says."""
        self._faults[(model, version)] = spec

    def clear(self, model: str | None = None, version: int | None = None) -> None:
        """Remove faults (all, a model's, or one version's)."""
        for key in list(self._faults):
            if (model is None or key[0] == model) and (version is None or key[1] == version):
                del self._faults[key]

    def get(self, model: str, version: int) -> FaultSpec | None:
        """The fault set for this version, if any."""
        return self._faults.get((model, version)) if self._faults else None


_KEYS = {"errors": "error_rate", "latency": "extra_latency_s", "shift": "prediction_shift"}


def parse_fault(text: str) -> tuple[str, int, FaultSpec]:
    """Parse ``MODEL:VERSION:errors=0.05,latency=0.2,shift=0.3,crash`` (for the CLI)."""
    parts = text.split(":")
    if len(parts) != 3 or not parts[1].isdigit():
        raise ConfigError(f"fault {text!r} must look like MODEL:VERSION:errors=0.05,latency=0.2")
    values: dict[str, float | bool] = {}
    for item in filter(None, parts[2].split(",")):
        name, _, raw = item.partition("=")
        if name == "crash":
            values["crash"] = True
            continue
        if name not in _KEYS:
            raise ConfigError(f"fault setting {name!r} unknown; use errors, latency, shift, crash")
        try:
            values[_KEYS[name]] = float(raw)
        except ValueError as exc:
            raise ConfigError(f"fault setting {name!r} needs a number, got {raw!r}") from exc
    return parts[0], int(parts[1]), FaultSpec(**values)  # type: ignore[arg-type]  # keys checked above
