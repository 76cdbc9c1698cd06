"""Privacy by default: personal data leaves a frame the moment it is loaded, and the values of
sensitive columns are masked wherever they would be shown.

A pipeline spec's ``privacy`` block is a ``PrivacyPolicy``:

- ``pii: {column: drop | hash}``: ``drop`` removes the column; ``hash`` replaces each value by
  its keyed HMAC-SHA256 (hex), so the column still joins and can be a categorical feature, but
  no one without the key can test a guess. The key comes from ``RETRAIN_PII_KEY``; a hash rule
  without a key refuses to run (never a bare, unkeyed hash, which a dictionary reverses).
- ``sensitive: [column, ...]``: kept for training, never shown: drift reports, model cards and
  validation results show ``[sensitive]`` (or numbered stand-ins) instead of their values.
- ``retention_days``: how long snapshots and reports are kept (``retrain.retention``).

``apply_pii`` runs on every frame straight after it is read from its source, before the first
snapshot, so no snapshot, report, log line or tracking run ever sees the personal values.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Collection, Sequence
from dataclasses import replace
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from registry.errors import ConfigError
from tasks.data.validation_result import CheckResult, ValidationResult

__all__ = [
    "MASK",
    "PII_KEY_ENV",
    "PrivacyPolicy",
    "apply_pii",
    "mask_checks",
    "mask_for_report",
    "masked_labels",
]

MASK = "[sensitive]"
"""What is shown instead of a sensitive value."""
PII_KEY_ENV = "RETRAIN_PII_KEY"
_MIN_KEY_CHARS = 16


class PrivacyPolicy(BaseModel):
    """What a pipeline does with personal and sensitive columns (part of a pipeline spec)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pii: dict[str, Literal["drop", "hash"]] = Field(
        default_factory=dict,
        description="Personal columns: drop them, or hash them (keyed HMAC-SHA256) on load.",
    )
    sensitive: list[str] = Field(
        default_factory=list, description="Columns kept for training whose values are never shown."
    )
    retention_days: int | None = Field(
        default=None, ge=1, description="Days snapshots and reports are kept (None: forever)."
    )

    @field_validator("sensitive")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("list each column once")
        return value

    @property
    def hashed(self) -> list[str]:
        """The columns replaced by their keyed hash."""
        return [c for c, rule in self.pii.items() if rule == "hash"]

    @property
    def dropped(self) -> list[str]:
        """The columns removed on load."""
        return [c for c, rule in self.pii.items() if rule == "drop"]


def apply_pii(
    frame: pd.DataFrame, policy: PrivacyPolicy | None, key: str | bytes | None
) -> pd.DataFrame:
    """``frame`` with ``policy``'s PII columns dropped or replaced by their keyed hash.

    Columns the frame lacks are skipped (there is nothing to remove). A hash rule without a
    key raises ``ConfigError`` (one line), before anything is written anywhere.
    """
    if policy is None or not policy.pii:
        return frame
    hashed = [c for c in policy.hashed if c in frame.columns]
    secret = _secret(key) if policy.hashed else b""
    dropped = [c for c in policy.dropped if c in frame.columns]
    if not dropped and not hashed:
        return frame
    out = frame.drop(columns=dropped)
    for column in hashed:
        out[column] = _hmac_column(out[column], secret)
    return out


def _secret(key: str | bytes | None) -> bytes:
    if key is None or not str(key.decode() if isinstance(key, bytes) else key).strip():
        raise ConfigError(
            f"privacy.pii: hashing needs a key; set {PII_KEY_ENV} to a secret of at least "
            f"{_MIN_KEY_CHARS} characters (keep it: the same key keeps hashed joins matching)"
        )
    secret = key if isinstance(key, bytes) else key.encode("utf-8")
    if len(secret) < _MIN_KEY_CHARS:
        raise ConfigError(
            f"privacy.pii: {PII_KEY_ENV} is {len(secret)} characters; use at least "
            f"{_MIN_KEY_CHARS}, a random secret, not a word"
        )
    return secret


def _hmac_column(series: pd.Series, secret: bytes) -> pd.Series:
    """Each value's HMAC-SHA256 (hex) under ``secret``; missing values stay missing."""
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    digests = np.array(
        [hmac.new(secret, str(v).encode("utf-8"), hashlib.sha256).hexdigest() for v in uniques],
        dtype=object,
    )
    values = np.full(len(series), None, dtype=object)
    known = codes >= 0
    values[known] = digests[codes[known]]
    return pd.Series(values, index=series.index, name=series.name, dtype=object)


def masked_labels(values: Sequence[str]) -> dict[str, str]:
    """Numbered stand-ins (``[sensitive 1]`` ...) for the distinct ``values``, in their order."""
    return {v: f"{MASK[:-1]} {i}]" for i, v in enumerate(dict.fromkeys(values), start=1)}


def mask_for_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: Collection[str],
    *,
    categorical: Collection[str] = (),
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Both frames with the values of ``columns`` replaced, the same way on both sides, so a
    report can show their distributions and drift but never a value.

    Categories become numbered stand-ins (relabelling leaves every category test's score as
    it was); numbers are standardised by the reference's mean and deviation (an affine map:
    Wasserstein distance over deviation, Kolmogorov-Smirnov and PSI keep their scores).
    """
    wanted = [c for c in columns if c in reference.columns or c in current.columns]
    if not wanted:
        return reference, current
    ref, cur = reference.copy(), current.copy()
    for column in wanted:
        sides = [f for f in (ref, cur) if column in f.columns]
        numeric = column not in categorical and all(
            pd.api.types.is_numeric_dtype(f[column].dtype)
            and not pd.api.types.is_bool_dtype(f[column].dtype)
            for f in sides
        )
        if numeric:
            base = ref[column] if column in ref.columns else sides[0][column]
            mean = float(base.mean()) if base.notna().any() else 0.0
            std = float(base.std()) if base.notna().sum() > 1 else 0.0
            scale = std if np.isfinite(std) and std > 0 else 1.0
            for f in sides:
                f[column] = (f[column].astype("float64") - mean) / scale
            continue
        seen = sorted({str(v) for f in sides for v in f[column].dropna().unique()})
        labels = masked_labels(seen)
        for f in sides:
            f[column] = [None if pd.isna(v) else labels[str(v)] for v in f[column]]
    return ref, cur


def mask_checks(result: ValidationResult, sensitive: Collection[str]) -> ValidationResult:
    """``result`` with what GX observed on sensitive columns (a minimum, a mean, a most
    common value ...) shown as ``[sensitive]``; counts and verdicts stay."""
    if not sensitive:
        return result
    return replace(result, checks=tuple(_mask_check(c, sensitive) for c in result.checks))


def _mask_check(check: CheckResult, sensitive: Collection[str]) -> CheckResult:
    if check.column not in sensitive or check.observed is None:
        return check
    detail = check.detail.replace(check.observed, MASK) if check.detail else check.detail
    return replace(check, observed=MASK, detail=detail)
