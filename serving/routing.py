"""Which version answers a request: champion, canary by weight, sticky by a request key.

A ``Route`` is immutable; the alias follower builds a new one and swaps it in with one
assignment, so a request always sees a consistent champion/canary/weight triple.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = ["LoadedModel", "Route", "sticky_bucket"]


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """One version's verified bundle, held in memory."""

    model: str
    version: int
    digest: str
    bundle: Any  # models.bundle.ModelBundle (anything with .predict(instances))
    loaded_at: datetime

    def label_range(self) -> tuple[float, float]:
        """The feedback labels this version accepts: its task and training target decide."""
        bounds: tuple[float, float] = self.bundle.preprocessor.label_range(self.bundle.task)
        return bounds


def sticky_bucket(model: str, key: str) -> float:
    """A stable position in [0, 100) for ``key``: the same caller always lands in one place.

    Raising the weight only adds callers to the canary (10% -> 25% keeps the first 10%).
    """
    digest = hashlib.blake2b(f"{model}\x00{key}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") % 10_000) / 100.0


@dataclass(frozen=True, slots=True)
class Route:
    """The routing table of one model at one moment."""

    model: str
    champion: LoadedModel | None
    canary: LoadedModel | None = None
    weight: float = 0.0  # percent to the canary (mirrored to it in shadow mode)
    shadow: bool = False

    def shares(self) -> tuple[float, float]:
        """(champion's, canary's) percent of traffic; in shadow mode the champion answers all."""
        canary = self.weight if self.canary is not None else 0.0
        return (100.0 if self.shadow else 100.0 - canary), canary

    def weights(self) -> list[tuple[str, int, str, float]]:
        """(model, version, variant, percent of traffic) of each version this route serves."""
        champion_share, canary_share = self.shares()
        out = []
        if self.champion is not None:
            out.append((self.model, self.champion.version, "champion", champion_share))
        if self.canary is not None:
            variant = "shadow" if self.shadow else "canary"
            out.append((self.model, self.canary.version, variant, canary_share))
        return out

    def pick(self, key: str | None) -> tuple[LoadedModel, str, LoadedModel | None]:
        """(version that answers, its variant, version to score in shadow or None)."""
        champion = self.champion
        assert champion is not None, "a route without a champion is never served"
        canary = self.canary
        if canary is None or self.weight <= 0.0:
            return champion, "champion", None
        position = sticky_bucket(self.model, key) if key else random.random() * 100.0
        if position >= self.weight:
            return champion, "champion", None
        if self.shadow:
            return champion, "champion", canary
        return canary, "canary", None
