"""Pipeline specs: one YAML file per model says what to train, on which data, and when.

A spec names the dataset and its contract (a GX suite file beside the spec, or a suite name on
the search path; see ``tasks.data.contracts``), the target and features, the model and its
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
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from models.config import ModelConfig, TrainingConfig
from registry.errors import ConfigError
from registry.hashing import digest_bytes
from retrain.config.spec_parts import DatasetSpec, FeatureSpec, ScheduleSpec, Strict, TriggerSpec
from retrain.config.spec_privacy import PrivacyPolicy, privacy_problem, spread_sensitive
from retrain.config.spec_yaml import MODEL_NAME_PATTERN, UniqueKeyLoader, describe_first_error
from tasks.data.drift import DriftPolicy
from tasks.gate.behaviour import behaviour_problem
from tasks.gate.evaluate import GateRules
from tasks.pipeline.budget import Budget
from tasks.pipeline.plan import PipelinePlan
from tasks.release.policy import CanaryPolicy, ReleasePolicy
from tasks.training.plan import TrainingPlan

if TYPE_CHECKING:
    from tasks.data.contracts import SuiteFile

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
    "read_contract",
    "spec_digest",
]

DEFAULT_SPECS_DIR = Path(__file__).resolve().parents[1] / "pipelines"
_UNIT_METRICS = frozenset({"roc_auc", "accuracy", "f1"})


class PipelineSpec(Strict):
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
    budget: Budget = Field(
        default_factory=Budget,
        description="max_training_minutes, max_gpu_seconds, max_predict_p95_ms, "
        "max_cpu_ms_per_1k_predictions (all optional).",
        exclude_if=lambda budget: budget.empty,  # no block: the spec's digest is as before
    )
    privacy: PrivacyPolicy = Field(
        default_factory=PrivacyPolicy,
        description="pii: {column: drop | hash}, sensitive: [columns], retention_days.",
    )

    @model_validator(mode="before")
    @classmethod
    def _sensitive_everywhere(cls, data: Any) -> Any:
        return spread_sensitive(data)  # drift and gate mask what privacy calls sensitive

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
        problem = behaviour_problem(
            self.gate.behaviour, self.features.numeric, self.features.categorical
        )
        if problem is not None:
            raise ValueError(problem)
        problem = privacy_problem(
            self.privacy,
            target=self.target,
            numeric=self.features.numeric,
            categorical=self.features.categorical,
        )
        if problem is not None:
            raise ValueError(problem)
        return self

    @property
    def digest(self) -> str:
        """``sha256:<hex>`` of the canonical JSON; equal meaning, equal digest."""
        return spec_digest(self)

    @property
    def contract_suite(self) -> SuiteFile | None:
        """The contract's suite as read from a file when the spec was loaded (in this process),
        found by ``dataset.contract_digest``; None for a spec read from the registry elsewhere."""
        from tasks.data.contracts import remembered_suite

        return remembered_suite(self.dataset.contract_digest)

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
        suite = self.contract_suite
        return PipelinePlan(
            training,
            holdout_fraction=self.dataset.holdout_fraction,
            contract=self.dataset.contract,
            contract_digest=self.dataset.contract_digest,
            contract_suite=None if suite is None else dict(suite.suite),
            gate=self.gate,
            drift=self.drift,
            canary=self.canary,
            spec_digest=self.digest,
            release=self.release,
            budget=self.budget,
            privacy=self.privacy,
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


def load_spec(path: str | Path, *, folders: Sequence[Path] = ()) -> PipelineSpec:
    """Read and validate the spec at ``path``, with its contract's suite read and its digest
    recorded (a relative suite path is read from the spec's folder, a suite name from
    ``folders`` then the shipped suites); any mistake is one ``ConfigError`` line."""
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
    return parse_spec(text, source=path.name, base_dir=path.resolve().parent, folders=folders)


def parse_spec(
    text: str,
    *,
    source: str = "<spec>",
    base_dir: Path | None = None,
    folders: Sequence[Path] = (),
) -> PipelineSpec:
    """Validate spec ``text`` (YAML or JSON) and read its contract's suite (see ``load_spec``;
    ``base_dir`` defaults to the working folder); ``source`` names it in error messages."""
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
        spec = PipelineSpec.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"spec {source}: {describe_first_error(exc, PipelineSpec)}") from exc
    try:
        return read_contract(spec, base_dir=base_dir, folders=folders)
    except ConfigError as exc:
        raise ConfigError(f"spec {source}: {exc}") from exc


def read_contract(
    spec: PipelineSpec, *, base_dir: Path | None = None, folders: Sequence[Path] = ()
) -> PipelineSpec:
    """``spec`` with its contract's suite read from disk and its digest recorded; a spec
    without a contract is returned as it is. A digest already in the spec must match."""
    from tasks.data.contracts import find_suite_file, read_suite_file

    contract = spec.dataset.contract
    if contract is None:
        return spec
    try:
        found = find_suite_file(contract, base_dir=base_dir, folders=folders)
    except ConfigError as exc:
        raise ConfigError(f"dataset.contract: {exc}") from None
    suite = read_suite_file(found)
    written = spec.dataset.contract_digest
    if written is not None and written != suite.digest:
        raise ConfigError(
            f"dataset.contract_digest: {written} is not the digest of {suite.origin} "
            f"({suite.digest}); remove the line, loading the spec fills it in"
        )
    dataset = spec.dataset.model_copy(update={"contract_digest": suite.digest})
    return spec.model_copy(update={"dataset": dataset})
