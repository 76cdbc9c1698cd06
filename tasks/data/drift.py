"""Drift between a reference (the champion's training snapshot) and current data, via Evidently.

One Evidently 0.7 ``Report`` runs ``DataDriftPreset`` over the feature columns, plus
``ValueDrift`` for the target and the model's prediction when both frames carry them. Each
column gets Evidently's method (chosen per column type and size unless the policy names one),
score, threshold and drifted flag; the verdict compares the share of drifted *features* (target
and prediction are reported, not counted) with the policy's ``drift_share``.

Staying fast on large data: Evidently's cost grows with rows (about a minute for 1M vs 1M on
two cores, mostly histogram and plot building), so both frames are first reduced to a
**seeded uniform sample** of at most ``DriftPolicy.sample_rows`` rows each, drawn without
replacement (reference with ``default_rng([seed, 0])``, current with ``default_rng([seed, 1])``).
The sample bounds Evidently's memory and time whatever the input size. With the default 50,000
rows the sampling error of Evidently's default scores (normed Wasserstein distance, Jensen-Shannon
distance) is far below their 0.1 thresholds; ``tests/tasks/test_data_drift.py`` checks the sampled
verdict equals the full-data verdict on every simulator scenario. ``sample_rows=None`` disables
sampling. Samples stay above 1,000 rows so Evidently picks the same methods as on the full data.

Columns missing from the current frame, or whose type changed between numeric and
non-numeric, cannot be compared by a statistical test; they count as drifted with method
``missing`` or ``type_changed``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from registry.errors import DriftError
from tasks.data.drift_result import ColumnDrift, DriftResult
from tasks.data.privacy import mask_for_report
from tasks.data.sources import EVENT_TIME
from tasks.reporting.artifacts import (
    artifact_key,
    blob_link,
    publish_link,
    publish_markdown,
    publish_table,
)

if TYPE_CHECKING:
    from registry.records import ArtifactRecord
    from registry.store import Registry

__all__ = [
    "DriftPolicy",
    "detect_drift",
    "record_drift",
    "sample_frame",
    "sample_positions",
]

_MIN_SAMPLE = 1_001  # Evidently switches tests at 1,000 rows; stay on the large-data side


class DriftPolicy(BaseModel):
    """How drift is measured and when a dataset counts as drifted (part of a pipeline spec)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    drift_share: float = Field(
        default=0.3, gt=0.0, le=1.0, description="Dataset drifts when this share of features do."
    )
    columns: list[str] | None = Field(
        default=None, description="Features to compare (default: reference columns not excluded)."
    )
    exclude: list[str] = Field(
        default_factory=lambda: [EVENT_TIME],
        description="Columns never treated as features when ``columns`` is not given.",
    )
    target: str | None = Field(
        default=None, description="Target column, reported separately (a spec fills it in)."
    )
    categorical: list[str] = Field(
        default_factory=list,
        description="Columns compared as categories whatever their type (a spec fills in its "
        "categorical features): integer codes are not distances.",
    )
    prediction: str | None = Field(
        default="prediction", description="Prediction column, reported separately."
    )
    method: str | None = Field(default=None, description="Evidently stat test for all columns.")
    num_method: str | None = None
    cat_method: str | None = None
    per_column_method: dict[str, str] = Field(default_factory=dict)
    threshold: float | None = Field(default=None, description="Threshold for all columns.")
    num_threshold: float | None = None
    cat_threshold: float | None = None
    per_column_threshold: dict[str, float] = Field(default_factory=dict)
    sample_rows: int | None = Field(
        default=50_000, ge=_MIN_SAMPLE, description="Rows sampled per side; None = all rows."
    )
    seed: int = Field(default=0, description="Seed of the row sample.")
    sensitive: list[str] = Field(
        default_factory=list,
        description="Columns whose values the report never shows (a spec fills in "
        "privacy.sensitive); their drift is measured on masked values.",
    )


def sample_frame(frame: pd.DataFrame, rows: int | None, seed: int, stream: int) -> pd.DataFrame:
    """A seeded uniform sample of ``rows`` rows (original order kept), or ``frame`` if smaller."""
    if rows is None or len(frame) <= rows:
        return frame
    return frame.iloc[sample_positions(len(frame), rows, seed, stream)].reset_index(drop=True)


def sample_positions(total: int, rows: int, seed: int, stream: int) -> npt.NDArray[np.int64]:
    """The sorted row positions ``sample_frame`` picks from a frame of ``total`` rows (the
    streamed drift draws the same ones, ``tasks.data.stream_drift``)."""
    if total <= rows:
        return np.arange(total, dtype=np.int64)
    rng = np.random.default_rng([seed, stream])
    return np.sort(rng.choice(total, size=rows, replace=False)).astype(np.int64)


def detect_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    policy: DriftPolicy | None = None,
    *,
    render: bool = True,
) -> DriftResult:
    """Compare ``current`` with ``reference``; ``render`` also builds the HTML report."""
    policy = policy or DriftPolicy()
    if reference.empty or current.empty:
        raise DriftError("drift needs rows in both the reference and the current data")
    reserved = {*policy.exclude, policy.target, policy.prediction}
    wanted = policy.columns or [str(c) for c in reference.columns if c not in reserved]
    missing = [c for c in wanted if c not in reference.columns]
    if missing:
        raise DriftError(f"drift columns {missing} are not in the reference data")
    reference, current = _as_categories(reference, policy), _as_categories(current, policy)
    if policy.sensitive:
        reference, current = mask_for_report(
            reference, current, policy.sensitive, categorical=policy.categorical
        )
    broken = _uncomparable(reference, current, wanted)
    features = [c for c in wanted if c not in broken]
    extras = [
        c for c in (policy.target, policy.prediction) if c and _comparable(reference, current, c)
    ]
    if not features:
        raise DriftError("no feature column can be compared between reference and current data")
    ref = sample_frame(reference[features + extras], policy.sample_rows, policy.seed, 0)
    cur = sample_frame(current[features + extras], policy.sample_rows, policy.seed, 1)
    measured, html = _run_evidently(ref, cur, features, extras, policy, render)
    columns = [measured[c] for c in features] + [broken[c] for c in wanted if c in broken]
    columns.sort(key=lambda c: wanted.index(c.column))
    drifted = sum(c.drifted for c in columns)
    share = drifted / len(columns)
    return DriftResult(
        columns=tuple(columns),
        drifted_count=drifted,
        drifted_share=share,
        drift_share=policy.drift_share,
        drifted=share >= policy.drift_share,
        target=measured.get(policy.target or ""),
        prediction=measured.get(policy.prediction or ""),
        reference_rows=len(reference),
        current_rows=len(current),
        sampled_rows=(len(ref), len(cur)),
        seed=policy.seed,
        html=html,
    )


def record_drift(
    registry: Registry,
    result: DriftResult,
    *,
    name: str,
    meta: Mapping[str, Any] | None = None,
) -> ArtifactRecord:
    """Store the HTML report (content-hashed) as a ``drift_report`` artifact; publish it."""
    if not result.html:
        raise DriftError("this drift result has no HTML report; run detect_drift(render=True)")
    digest = registry.put_bytes(result.html.encode("utf-8"), media_type="text/html")
    record = registry.catalog.register_artifact(
        "drift_report", name, digest, meta={**result.to_dict(), **dict(meta or {})}
    )
    key = artifact_key("drift", name)
    publish_table(key, result.table_rows(), description=result.summary())
    publish_markdown(f"{key}-summary", f"**{name}**: {result.summary()}\n\nReport: `{digest}`")
    link = blob_link(registry, digest, "drift-report.html")
    publish_link(f"{key}-report", link, "Evidently drift report")
    return record


def _run_evidently(
    ref: pd.DataFrame,
    cur: pd.DataFrame,
    features: list[str],
    extras: list[str],
    policy: DriftPolicy,
    render: bool,
) -> tuple[dict[str, ColumnDrift], str]:
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset

    numeric = [
        c for c in features + extras if _is_numeric(ref[c]) and not _is_label(ref, c, policy)
    ]
    categorical = [c for c in features + extras if c not in numeric]
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    preset = DataDriftPreset(
        columns=features,
        drift_share=policy.drift_share,
        method=policy.method,
        num_method=policy.num_method,
        cat_method=policy.cat_method,
        per_column_method=policy.per_column_method or None,
        threshold=policy.threshold,
        num_threshold=policy.num_threshold,
        cat_threshold=policy.cat_threshold,
        per_column_threshold=policy.per_column_threshold or None,
    )
    metrics: list[Any] = [preset, *(_value_drift(ValueDrift, c, policy) for c in extras)]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Evidently's pandas/plotly deprecation chatter
            snapshot = Report(metrics, include_tests=True).run(
                Dataset.from_pandas(cur, data_definition=definition),
                Dataset.from_pandas(ref, data_definition=definition),
            )
    except (ValueError, KeyError, TypeError) as exc:
        raise DriftError(f"Evidently could not compare the data: {exc}".splitlines()[0]) from exc
    columns = _columns_from(snapshot.dict(), numeric)
    return columns, snapshot.get_html_str(as_iframe=False) if render else ""


def _columns_from(report: dict[str, Any], numeric: list[str]) -> dict[str, ColumnDrift]:
    status = {t["metric_config"]["metric_id"]: t["status"] for t in report.get("tests", [])}
    out: dict[str, ColumnDrift] = {}
    for metric in report["metrics"]:
        config = metric["config"]
        if not str(config.get("type", "")).endswith(":ValueDrift"):
            continue
        column = str(config["column"])
        out[column] = ColumnDrift(
            column=column,
            kind="numerical" if column in numeric else "categorical",
            method=str(config.get("method")),
            score=float(metric["value"]),
            threshold=float(config.get("threshold")),
            drifted=status.get(metric["id"]) == "FAIL",
        )
    return out


def _value_drift(cls: Any, column: str, policy: DriftPolicy) -> Any:
    method = policy.per_column_method.get(column, policy.method)
    threshold = policy.per_column_threshold.get(column, policy.threshold)
    return cls(column=column, method=method, threshold=threshold)


def _as_categories(frame: pd.DataFrame, policy: DriftPolicy) -> pd.DataFrame:
    """``frame`` with the policy's categorical columns as category names (``3`` and ``3.0``
    alike), so they are compared as categories, never as numbers."""
    from models.categories import category_names

    named = [c for c in policy.categorical if c in frame.columns]
    if not named:
        return frame
    return frame.assign(**{c: category_names(frame[c]).astype(object) for c in named})


def _uncomparable(
    ref: pd.DataFrame, cur: pd.DataFrame, columns: list[str]
) -> dict[str, ColumnDrift]:
    out = {}
    for column in columns:
        if column not in cur.columns:
            out[column] = ColumnDrift(column, "missing", "missing", None, None, True)
        elif _is_numeric(ref[column]) != _is_numeric(cur[column]):
            out[column] = ColumnDrift(column, "type_changed", "type_changed", None, None, True)
    return out


def _comparable(ref: pd.DataFrame, cur: pd.DataFrame, column: str) -> bool:
    return column in ref.columns and column in cur.columns and not _uncomparable(ref, cur, [column])


def _is_numeric(series: pd.Series) -> bool:
    return bool(pd.api.types.is_numeric_dtype(series.dtype)) and not pd.api.types.is_bool_dtype(
        series.dtype
    )


def _is_label(frame: pd.DataFrame, column: str, policy: DriftPolicy) -> bool:
    """A numeric target with few values (0/1 classes) is compared as categorical."""
    return column == policy.target and frame[column].nunique() <= 10
