"""The verdict of a data contract: one ``CheckResult`` per expectation, in suite order.

Plain frozen dataclasses, JSON-serialisable with sorted keys and no timestamps, so the same
batch checked against the same suite always stores the same bytes (and digest).
"""

from __future__ import annotations

import json
from collections.abc import Set
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["CheckResult", "ValidationResult", "check_from_gx"]

_PREFIX = "expect_"


@dataclass(frozen=True)
class CheckResult:
    """One expectation's outcome with the counts GX measured."""

    expectation: str
    column: str | None
    success: bool
    observed: str | None = None
    element_count: int | None = None
    unexpected_count: int | None = None
    unexpected_percent: float | None = None
    missing_count: int | None = None
    detail: str = ""

    @property
    def label(self) -> str:
        """Short name, e.g. ``column_values_to_not_be_null(annual_income)``."""
        name = self.expectation.removeprefix(_PREFIX)
        return f"{name}({self.column})" if self.column else name

    def describe(self) -> str:
        """What went wrong, in a few words with the counts."""
        if self.detail:
            return self.detail
        if self.unexpected_count is not None and self.element_count is not None:
            return (
                f"{self.unexpected_count} of {self.element_count} unexpected"
                f" ({(self.unexpected_percent or 0.0):.2f}%)"
            )
        return f"observed {self.observed}"


@dataclass(frozen=True)
class ValidationResult:
    """All checks of one contract over one batch; ``success`` only if every check passed."""

    contract: str
    rows: int
    checks: tuple[CheckResult, ...]

    @property
    def success(self) -> bool:
        return all(c.success for c in self.checks)

    @property
    def failures(self) -> tuple[CheckResult, ...]:
        return tuple(c for c in self.checks if not c.success)

    def summary(self, limit: int = 6) -> str:
        """One line: the verdict and each failed expectation with its counts."""
        failed = self.failures
        if not failed:
            total = len(self.checks)
            return f"contract {self.contract}: all {total} checks passed on {self.rows} rows"
        parts = [f"{c.label} {c.describe()}" for c in failed[:limit]]
        more = f"; and {len(failed) - limit} more" if len(failed) > limit else ""
        return (
            f"contract {self.contract}: {len(failed)} of {len(self.checks)} checks failed on"
            f" {self.rows} rows: {'; '.join(parts)}{more}"
        )

    def table_rows(self) -> list[dict[str, Any]]:
        """Rows for a CLI or Prefect table, failures first."""
        ordered = sorted(self.checks, key=lambda c: c.success)
        return [
            {
                "column": c.column or "(table)",
                "check": c.expectation.removeprefix(_PREFIX).removeprefix("column_"),
                "ok": c.success,
                "observed": c.observed,
                "detail": "" if c.success else c.describe(),
            }
            for c in ordered
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "contract": self.contract,
            "rows": self.rows,
            "success": self.success,
            "checks": [asdict(c) for c in self.checks],
        }

    def to_json(self) -> bytes:
        """Canonical JSON bytes (sorted keys, no timestamps): same verdict, same digest."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()


def check_from_gx(gx_result: Any, columns: Set[str]) -> CheckResult:
    """Translate one GX ``ExpectationValidationResult``; a missing column is a failed check."""
    config = gx_result.expectation_config
    kwargs = dict(config.kwargs)
    column = kwargs.get("column")
    res: dict[str, Any] = dict(gx_result.result or {})
    observed = res.get("observed_value")
    base: dict[str, Any] = {
        "expectation": str(config.type),
        "column": str(column) if column is not None else None,
        "observed": _text(observed),
        "element_count": res.get("element_count"),
        "unexpected_count": res.get("unexpected_count"),
        "unexpected_percent": res.get("unexpected_percent"),
        "missing_count": res.get("missing_count"),
    }
    if column is not None and str(column) not in columns:
        return CheckResult(**base, success=False, detail=f"column {column!r} is missing")
    error = _exception_message(gx_result.exception_info)
    if error:
        return CheckResult(**base, success=False, detail=f"could not be evaluated: {error}")
    detail = "" if gx_result.success else _mismatch(res, kwargs)
    return CheckResult(**base, success=bool(gx_result.success), detail=detail)


def _mismatch(res: dict[str, Any], kwargs: dict[str, Any]) -> str:
    mismatched = (res.get("details") or {}).get("mismatched")
    if isinstance(mismatched, dict):
        missing = mismatched.get("missing") or []
        extra = mismatched.get("unexpected") or []
        bits = [f"missing {sorted(map(str, missing))}"] if missing else []
        bits += [f"unexpected {sorted(map(str, extra))}"] if extra else []
        return ", ".join(bits)
    if "mostly" in kwargs and res.get("unexpected_percent") is not None:
        return (
            f"{res.get('unexpected_count')} of {res.get('element_count')} unexpected"
            f" ({res['unexpected_percent']:.2f}%), at most {100 * (1 - kwargs['mostly']):.2f}%"
            " allowed"
        )
    if "min_value" in kwargs or "max_value" in kwargs:
        if res.get("unexpected_count") is not None:
            return ""
        return (
            f"observed {_text(res.get('observed_value'))}, expected between"
            f" {kwargs.get('min_value')} and {kwargs.get('max_value')}"
        )
    return ""


def _exception_message(info: Any) -> str:
    """GX nests exception info either flat or per metric; return the first message."""
    if not isinstance(info, dict):
        return ""
    if info.get("raised_exception"):
        return str(info.get("exception_message") or "").splitlines()[0]
    for value in info.values():
        if isinstance(value, dict) and value.get("raised_exception"):
            return str(value.get("exception_message") or "").splitlines()[0]
    return ""


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, list | tuple | set):
        return f"{len(value)} columns" if all(isinstance(v, str) for v in value) else str(value)
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
