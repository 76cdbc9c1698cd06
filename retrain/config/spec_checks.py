"""What ``retrain pipelines register`` checks before it stores a spec, so a spec that can
never run is refused at once instead of failing at its first run.

- The contract's suite builds in GX (unknown expectation types and bad arguments refused).
- With data checks on: a bounded sample of the source can be read; the target and every
  feature are columns of it; numeric features hold numbers; a binary target holds only 0 and
  1, a regression target numbers, with no empty values. The contract is run over the sample:
  a failure there is a warning (a sample is not a batch), not a refusal.

The cron expressions and everything else in the spec were checked when it was loaded. Each
problem is one line that names the field and what to do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pandas as pd

from registry.errors import ConfigError, DataSourceError

if TYPE_CHECKING:
    from retrain.config.specs import PipelineSpec
    from tasks.data.sources import S3Options

__all__ = ["SpecCheck", "check_sample", "check_spec"]


@dataclass
class SpecCheck:
    """Problems (each refuses the spec) and warnings, one line each."""

    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    sample_rows: int | None = None

    @property
    def ok(self) -> bool:
        """No problem found."""
        return not self.problems


def check_spec(
    spec: PipelineSpec,
    *,
    data: bool = True,
    sample_rows: int = 20_000,
    s3: S3Options | None = None,
) -> SpecCheck:
    """Check ``spec`` (loaded from a file, with its contract read) as described above;
    ``data=False`` skips everything that reads the source (``--no-check``)."""
    from tasks.data.sampling import load_sample
    from tasks.data.sources import NO_S3
    from tasks.data.validation import check_suite

    report = SpecCheck()
    suite = spec.contract_suite
    if suite is not None:
        try:
            check_suite(suite.suite)
        except ConfigError as exc:
            report.problems.append(f"dataset.contract: {suite.origin}: {exc}")
            suite = None
    if not data:
        return report
    source = spec.dataset.source
    try:
        sample = load_sample(source, rows=sample_rows, **(s3 or NO_S3))
    except DataSourceError as exc:
        report.problems.append(
            f"dataset.source: {exc} (or register with --no-check if only workers can read it)"
        )
        return report
    report.sample_rows = len(sample)
    report.problems += check_sample(spec, sample)
    if suite is not None and not report.problems:
        report.warnings += _contract_on_sample(suite.suite, sample)
    return report


def check_sample(spec: PipelineSpec, sample: pd.DataFrame) -> list[str]:
    """The lines saying where ``sample`` does not fit ``spec``'s target and features."""
    columns = {str(c) for c in sample.columns}
    shown = ", ".join(map(str, list(sample.columns)[:12]))
    more = ", ..." if len(sample.columns) > 12 else ""
    problems = []
    if spec.target not in columns:
        problems.append(
            f"target: {spec.target!r} is not a column of the data (columns: {shown}{more}); "
            "fix target"
        )
    else:
        problems += _target_problems(spec, sample[spec.target])
    features = spec.features
    for kind, names in (("numeric", features.numeric), ("categorical", features.categorical)):
        for name in names:
            if name not in columns:
                problems.append(
                    f"features.{kind}: {name!r} is not a column of the data (columns: "
                    f"{shown}{more}); fix or remove it"
                )
            elif kind == "numeric":
                problems += _numeric_problems(name, sample[name])
    return problems


def _numeric_problems(name: str, column: pd.Series) -> list[str]:
    if not _numeric(column):
        return [
            f"features.numeric: {name!r} holds text (e.g. {_example(column)}), not numbers; "
            "move it to features.categorical"
        ]
    empty = int(column.isna().sum())
    if empty:
        return [
            f"features.numeric: {name!r} is empty in {empty} of {len(column)} sampled rows and "
            "the model takes no missing numbers; fill the gaps in the source or drop the feature"
        ]
    return []


def _target_problems(spec: PipelineSpec, target: pd.Series) -> list[str]:
    name = spec.target
    empty = int(target.isna().sum())
    if empty:
        return [
            f"target: {name!r} is empty in {empty} of {len(target)} sampled rows; drop or fill "
            "those rows in the source"
        ]
    if not _numeric(target):
        return [
            f"target: {name!r} holds text (e.g. {_example(target)}); recode it as 0/1 for a "
            "binary model or as numbers for a regression"
        ]
    if spec.task == "binary":
        values = set(pd.unique(target.astype(float)))
        odd = sorted(v for v in values if v not in (0.0, 1.0))
        if odd:
            shown = ", ".join(f"{v:g}" for v in odd[:3])
            return [
                f"target: {name!r} must hold only 0 and 1 for task binary; it also holds "
                f"{shown}; recode it, or set task: regression"
            ]
    return []


def _contract_on_sample(suite: Mapping[str, object], sample: pd.DataFrame) -> list[str]:
    from tasks.data.validation import validate_frame

    try:
        result = validate_frame(sample, suite, raise_on_failure=False)
    except ConfigError as exc:
        return [f"dataset.contract: could not run on the sample: {exc}"]
    if result.success:
        return []
    return [
        f"dataset.contract fails on a sample of {len(sample)} rows ({result.summary(limit=2)}); "
        "a run stops there until the data or the suite changes"
    ]


def _numeric(series: pd.Series) -> bool:
    return bool(pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series))


def _example(series: pd.Series) -> str:
    present = series.dropna()
    return repr(str(present.iloc[0])) if len(present) else "nothing"
