"""The parts of a pipeline spec: its dataset, features, schedules and triggers.

Each is a strict pydantic model (unknown fields refused, frozen); ``retrain.config.specs``
assembles them into a ``PipelineSpec``. Messages start with the field they are about: they
become the user's one line.
"""

from __future__ import annotations

import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from registry.errors import InvalidDigestError
from registry.hashing import parse_digest

__all__ = ["DatasetSpec", "FeatureSpec", "ScheduleSpec", "Strict", "TriggerSpec"]

_SUITE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


class Strict(BaseModel):
    """Unknown fields are refused; a spec never changes once validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetSpec(Strict):
    """Where training data comes from and which data contract it must satisfy."""

    source: str = Field(
        min_length=1,
        description="A file or folder (Parquet/CSV), s3://bucket/prefix, or simulator://loans?...",
    )
    contract: str | None = Field(
        default=None,
        description="The GX suite the data must pass: a .json path (relative to the spec's "
        "folder) or a suite name on expectations_path; none: no validation.",
    )
    contract_digest: str | None = Field(
        default=None,
        description="sha256 of the suite as registered (filled in when the spec is loaded).",
    )
    holdout_fraction: float = Field(default=0.2, gt=0.0, lt=0.5)
    recent: str | None = Field(
        default=None,
        description="Recent production data the drift monitor compares with the champion's "
        "training data (default: source).",
    )

    @field_validator("contract")
    @classmethod
    def _contract(cls, value: str | None) -> str | None:
        from tasks.data.contracts import is_suite_path

        if value is None or is_suite_path(value.strip()):
            return None if value is None else value.strip()
        if not _SUITE_NAME.fullmatch(value):
            raise ValueError(
                f"{value!r} is neither a suite file (a path ending in .json) nor a suite name "
                "(letters, digits, '.', '_' and '-')"
            )
        return value

    @model_validator(mode="after")
    def _digest_needs_contract(self) -> DatasetSpec:
        if self.contract is None and self.contract_digest is not None:
            raise ValueError("contract_digest: only a spec with a contract has one; remove it")
        return self

    @field_validator("contract_digest")
    @classmethod
    def _digest(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return parse_digest(value)
        except InvalidDigestError:
            raise ValueError(
                "expected sha256: and 64 hex digits; leave it out (loading the spec fills it in)"
            ) from None


class FeatureSpec(Strict):
    """The model's inputs, by kind."""

    numeric: list[str] = Field(default_factory=list)
    categorical: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _distinct(self) -> FeatureSpec:
        if not self.numeric and not self.categorical:
            raise ValueError("features: name at least one numeric or categorical feature")
        seen: set[str] = set()
        for kind, names in (("numeric", self.numeric), ("categorical", self.categorical)):
            for name in names:
                if name in seen:
                    raise ValueError(f"features.{kind}: {name!r} is listed twice")
                seen.add(name)
        return self

    @property
    def all(self) -> list[str]:
        """Every feature, numeric first."""
        return [*self.numeric, *self.categorical]


class ScheduleSpec(Strict):
    """When the retrain and the drift monitor run on their own (``null`` turns one off)."""

    retrain_cron: str | None = "0 3 * * 1"
    monitor_cron: str | None = "0 * * * *"
    timezone: str = "UTC"

    @field_validator("retrain_cron", "monitor_cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is None:
            return None
        # Prefect's own schedule model decides what its scheduler accepts; imported only here.
        from prefect.client.schemas.schedules import CronSchedule

        bad = ValueError(f"not a 5-field cron expression: {value!r} (e.g. '0 3 * * 1')")
        if len(value.split()) != 5:
            raise bad
        try:
            CronSchedule(cron=value, timezone="UTC")
        except ValidationError:
            raise bad from None
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA timezone {value!r} (e.g. UTC, Europe/Paris)") from None
        return value


class TriggerSpec(Strict):
    """What may start a retrain besides the schedule, and how often."""

    drift: bool = Field(default=True, description="Retrain when drift is detected or alerted.")
    cooldown_minutes: int = Field(default=60, ge=1, le=7 * 24 * 60)
