"""The outcome of a drift check: one ``ColumnDrift`` per column and the dataset verdict."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["ColumnDrift", "DriftResult"]


@dataclass(frozen=True)
class ColumnDrift:
    """Evidently's verdict on one column (``score``/``threshold`` None when not testable)."""

    column: str
    kind: str  # numerical, categorical, missing or type_changed
    method: str
    score: float | None
    threshold: float | None
    drifted: bool

    def row(self, role: str = "feature") -> dict[str, Any]:
        return {
            "column": self.column,
            "role": role,
            "method": self.method,
            "score": self.score,
            "threshold": self.threshold,
            "drifted": self.drifted,
        }


@dataclass(frozen=True)
class DriftResult:
    """Per-column drift, the drifted share of features and the verdict against the policy."""

    columns: tuple[ColumnDrift, ...]
    drifted_count: int
    drifted_share: float
    drift_share: float
    drifted: bool
    target: ColumnDrift | None
    prediction: ColumnDrift | None
    reference_rows: int
    current_rows: int
    sampled_rows: tuple[int, int]
    seed: int
    html: str = field(default="", repr=False, compare=False)

    @property
    def drifted_columns(self) -> list[str]:
        return [c.column for c in self.columns if c.drifted]

    def summary(self) -> str:
        """One line: verdict, share against threshold, drifted columns, target drift."""
        verdict = "DRIFT" if self.drifted else "no drift"
        names = ", ".join(self.drifted_columns[:8]) or "none"
        more = f" (+{len(self.drifted_columns) - 8} more)" if len(self.drifted_columns) > 8 else ""
        line = (
            f"{verdict}: {self.drifted_count} of {len(self.columns)} features drifted"
            f" (share {self.drifted_share:.2f}, threshold {self.drift_share:.2f}): {names}{more}"
        )
        for role, col in (("target", self.target), ("prediction", self.prediction)):
            if col is not None:
                line += f"; {role} {col.column} {'drifted' if col.drifted else 'stable'}"
        return line

    def table_rows(self) -> list[dict[str, Any]]:
        rows = [c.row() for c in self.columns]
        rows += [self.target.row("target")] if self.target else []
        rows += [self.prediction.row("prediction")] if self.prediction else []
        return rows

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, without the HTML."""
        return {
            "drifted": self.drifted,
            "drifted_share": self.drifted_share,
            "drift_share": self.drift_share,
            "drifted_count": self.drifted_count,
            "columns": [asdict(c) for c in self.columns],
            "target": asdict(self.target) if self.target else None,
            "prediction": asdict(self.prediction) if self.prediction else None,
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "sampled_rows": list(self.sampled_rows),
            "seed": self.seed,
        }
