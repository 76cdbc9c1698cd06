"""Pipeline specs: one YAML file per model says what to train, on which data, and when.

A spec names the dataset and its contract, the target and features, the model and its
training settings, the gate rules, the drift policy, the canary policy, the release mode
(``release: canary | shadow | gate``), the schedules and the trigger policy. It is validated
by pydantic (unknown fields are refused) and identified by the sha256 of its canonical JSON,
so two files that mean the same thing have the same digest.

A mistake in a spec is reported as one line naming the field, for example::

    spec loan-default.yaml: gate.floor: Input should be less than or equal to 1 (got 1.5)
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from models.config import ModelConfig, TrainingConfig
from registry.errors import ConfigError
from registry.hashing import digest_bytes
from retrain.config.spec_yaml import MODEL_NAME_PATTERN, UniqueKeyLoader, describe_first_error
from tasks.data.drift import DriftPolicy
from tasks.gate.evaluate import GateRules
from tasks.pipeline.plan import PipelinePlan
from tasks.release.policy import CanaryPolicy, ReleasePolicy
from tasks.training.plan import TrainingPlan

__all__ = [
    "DEFAULT_SPECS_DIR",
    "DatasetSpec",
    "FeatureSpec",
    "PipelineSpec",
    "ScheduleSpec",
    "TriggerSpec",
    "canonical_json",
    "default_spec_paths",
    "load_spec",
    "parse_spec",
    "spec_digest",
]

DEFAULT_SPECS_DIR = Path(__file__).resolve().parents[1] / "pipelines"
_UNIT_METRICS = frozenset({"roc_auc", "accuracy", "f1"})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetSpec(_Strict):
    """Where training data comes from and which data contract it must satisfy."""

    source: str = Field(
        min_length=1,
        description="A file or folder (Parquet/CSV), s3://bucket/prefix, or simulator://loans?...",
    )
    contract: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")
    holdout_fraction: float = Field(default=0.2, gt=0.0, lt=0.5)
    recent: str | None = Field(
        default=None,
        description="Recent production data the drift monitor compares with the champion's "
        "training data (default: source).",
    )


class FeatureSpec(_Strict):
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


class ScheduleSpec(_Strict):
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


class TriggerSpec(_Strict):
    """What may start a retrain besides the schedule, and how often."""

    drift: bool = Field(default=True, description="Retrain when drift is detected or alerted.")
    cooldown_minutes: int = Field(default=60, ge=1, le=7 * 24 * 60)


class PipelineSpec(_Strict):
    """Everything needed to keep one model fresh; ``name`` is also the model's name."""

    name: str
    description: str = ""
    dataset: DatasetSpec
    target: str = Field(min_length=1)
    task: Literal["binary", "regression"]
    features: FeatureSpec
    model: ModelConfig = Field(default_factory=ModelConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    gate: GateRules = Field(default_factory=GateRules)
    drift: DriftPolicy = Field(default_factory=DriftPolicy)
    canary: CanaryPolicy = Field(default_factory=CanaryPolicy)
    release: ReleasePolicy = Field(
        default_factory=ReleasePolicy,
        description="canary (default), shadow or gate; or {mode: shadow, shadow_windows: N}.",
    )
    schedule: ScheduleSpec = Field(default_factory=ScheduleSpec)
    triggers: TriggerSpec = Field(default_factory=TriggerSpec)

    @model_validator(mode="before")
    @classmethod
    def _drift_follows_spec(cls, data: Any) -> Any:
        # Unless told otherwise, drift compares the spec's features and reports its target
        # separately: other columns of the data (ids, other targets) are never features.
        if not isinstance(data, dict):
            return data
        drift = data.get("drift")
        if drift is not None and not isinstance(drift, dict):
            return data
        filled = dict(drift or {})
        if isinstance(data.get("target"), str):
            filled.setdefault("target", data["target"])
        features = data.get("features")
        if isinstance(features, dict):
            listed = [*(features.get("numeric") or []), *(features.get("categorical") or [])]
            if listed and all(isinstance(c, str) for c in listed):
                filled.setdefault("columns", listed)
                # Spec-categorical columns are compared as categories, integer codes too.
                filled.setdefault("categorical", list(features.get("categorical") or []))
        return {**data, "drift": filled}

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not re.fullmatch(MODEL_NAME_PATTERN, value):
            raise ValueError(
                f"use 2-48 lowercase letters, digits and dashes, starting with a letter; "
                f"got {value!r}"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> PipelineSpec:
        # Messages start with the field they are about: they become the user's one line.
        if self.target in self.features.all:
            raise ValueError(f"features: the target {self.target!r} must not also be a feature")
        try:
            metric = self.gate.metric_for(self.task)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        floor = self.gate.floor
        if floor is not None and metric in _UNIT_METRICS and not 0.0 <= floor <= 1.0:
            raise ValueError(f"gate.floor: {metric} lies in [0, 1]; got {floor}")
        for name in self.gate.slices:
            if name not in self.features.categorical:
                raise ValueError(f"gate.slices: {name!r} is not one of features.categorical")
        return self

    @property
    def digest(self) -> str:
        """``sha256:<hex>`` of the canonical JSON; equal meaning, equal digest."""
        return spec_digest(self)

    @property
    def plan(self) -> PipelinePlan:
        """The typed plan every step of a retrain takes (see ``tasks.pipeline.plan``)."""
        training = TrainingPlan(
            model=self.name,
            target=self.target,
            task=self.task,
            numeric=tuple(self.features.numeric),
            categorical=tuple(self.features.categorical),
            architecture=self.model,
            fitting=self.training,
        )
        return PipelinePlan(
            training,
            holdout_fraction=self.dataset.holdout_fraction,
            contract=self.dataset.contract,
            gate=self.gate,
            drift=self.drift,
            canary=self.canary,
            spec_digest=self.digest,
            release=self.release,
        )


def canonical_json(spec: PipelineSpec) -> bytes:
    """The spec as canonical JSON (sorted keys, no spaces, UTF-8): the bytes that are stored."""
    data = spec.model_dump(mode="json")
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def spec_digest(spec: PipelineSpec) -> str:
    """``sha256:<64 hex>`` of ``canonical_json(spec)``."""
    return digest_bytes(canonical_json(spec))


def default_spec_paths() -> list[Path]:
    """The specs shipped with the platform (``retrain/pipelines/*.yaml``), sorted by name."""
    return sorted(DEFAULT_SPECS_DIR.glob("*.yaml"))


def load_spec(path: str | Path) -> PipelineSpec:
    """Read and validate the spec at ``path``; any mistake is one ``ConfigError`` line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"spec {path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"spec {path}: is a folder; give the path of a .yaml file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"spec {path.name}: not UTF-8 text ({exc.reason})") from exc
    except OSError as exc:
        raise ConfigError(f"spec {path}: cannot be read ({exc.strerror})") from exc
    return parse_spec(text, source=path.name)


def parse_spec(text: str, *, source: str = "<spec>") -> PipelineSpec:
    """Validate spec ``text`` (YAML or JSON); ``source`` names it in error messages."""
    try:
        data = yaml.load(text, Loader=UniqueKeyLoader)  # a SafeLoader: no arbitrary objects
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(f"spec {source}: YAML syntax error at {where}{problem}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"spec {source}: YAML syntax error: {exc}") from exc
    if data is None:
        raise ConfigError(f"spec {source}: empty; expected name, dataset, target, task, features")
    if not isinstance(data, dict):
        kind = type(data).__name__
        raise ConfigError(f"spec {source}: expected a mapping of fields at the top, got a {kind}")
    try:
        return PipelineSpec.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"spec {source}: {describe_first_error(exc, PipelineSpec)}") from exc
