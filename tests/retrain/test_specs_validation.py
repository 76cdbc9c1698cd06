"""Pipeline specs: the shipped ones load, mistakes get one line naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from registry.errors import ConfigError, NotFoundError
from registry.store import Registry
from retrain.config.spec_store import get_registered_spec, list_registered_pipelines, register_spec
from retrain.config.specs import DEFAULT_SPECS_DIR, default_spec_paths, load_spec, parse_spec

LOAN = (DEFAULT_SPECS_DIR / "loan-default.yaml").read_text()


def test_shipped_specs_cover_a_binary_and_a_regression_model() -> None:
    specs = {spec.name: spec for spec in map(load_spec, default_spec_paths())}
    assert specs["loan-default"].task == "binary"
    assert specs["loan-default"].target == "default"
    assert specs["loss-given-default"].task == "regression"
    assert specs["loss-given-default"].target == "loss_given_default"
    assert specs["loss-given-default"].gate.metric_for("regression") == "rmse"


def test_digest_follows_meaning_not_formatting() -> None:
    spec = parse_spec(LOAN)
    as_json = spec.model_dump_json(indent=4)  # same content, different text
    assert parse_spec(as_json).digest == spec.digest
    changed = parse_spec(LOAN.replace("cooldown_minutes: 60", "cooldown_minutes: 30"))
    assert changed.digest != spec.digest
    assert spec.digest.startswith("sha256:") and len(spec.digest) == 71


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("floor: 0.65", "floor: 1.5", "gate.floor: roc_auc lies in [0, 1]"),
        ("  floor: 0.65", "  flor: 0.65", "gate.flor: unknown field (did you mean 'floor'?)"),
        ("max_regression: 0.01", "max_regression: -1", "gate.max_regression: Input should be"),
        ("target: default\n", "", "target: required field is missing"),
        ("task: binary", "task: ranking", "task: Input should be 'binary' or 'regression'"),
        ('"0 3 * * 1"', '"0 3 * * 8"', "schedule.retrain_cron: not a 5-field cron expression"),
        ("timezone: UTC", "timezone: Mars/Olympus", "schedule.timezone: unknown IANA timezone"),
        ("cooldown_minutes: 60", "cooldown_minutes: 0", "triggers.cooldown_minutes:"),
        ("slices: [region, employment]", "slices: [age]", "gate.slices: 'age' is not one of"),
        ("    - age\n", "    - age\n    - default\n", "features: the target 'default'"),
        ("holdout_fraction: 0.2", "holdout_fraction: 2", "dataset.holdout_fraction:"),
        ("steps: [10, 25, 50, 100]", "steps: [50, 25]", "canary.steps: steps must increase"),
        ("name: loan-default", "name: Loan Default", "name: use 2-48 lowercase letters"),
        ("task: binary", "task: binary\ntask: regression", "duplicate key 'task'"),
        ("features:\n", "features: [\n", "YAML syntax error at line"),
        ("  contract: loans", "  contract: 'loans!'", "dataset.contract: 'loans!' is neither a"),
        ("  contract: loans", "  contract: nowhere", "dataset.contract: no expectation suite"),
        ("  contract: loans", "  contract: x.json", "dataset.contract: no expectation suite file"),
    ],
)
def test_a_mistake_gets_one_line_naming_the_field(old: str, new: str, expected: str) -> None:
    assert old in LOAN
    with pytest.raises(ConfigError) as caught:
        parse_spec(LOAN.replace(old, new, 1), source="loan-default.yaml")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("spec loan-default.yaml: ")
    assert expected in message, message


def test_drift_and_the_plan_follow_the_spec() -> None:
    spec = parse_spec(LOAN)
    # Drift compares the spec's features and reports its target: never other data columns.
    assert spec.drift.columns == spec.features.all
    assert spec.drift.target == "default"
    own = parse_spec(LOAN.replace("drift_share: 0.3", "drift_share: 0.3\n  columns: [age]"))
    assert own.drift.columns == ["age"] and own.drift.target == "default"
    plan = spec.plan
    assert plan.model == "loan-default" and plan.contract == "loans"
    assert plan.training.target == "default" and plan.training.task == "binary"
    assert plan.training.numeric == tuple(spec.features.numeric)
    assert plan.training.categorical == tuple(spec.features.categorical)
    assert (plan.training.architecture, plan.training.fitting) == (spec.model, spec.training)
    assert (plan.gate, plan.drift, plan.canary) == (spec.gate, spec.drift, spec.canary)
    assert plan.holdout_fraction == spec.dataset.holdout_fraction
    assert plan.spec_digest == spec.digest
    assert plan.with_epochs(2).training.fitting.max_epochs == 2
    assert plan.with_epochs(None) is plan


def test_file_problems_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_spec(tmp_path / "missing.yaml")
    (tmp_path / "empty.yaml").write_text("")
    with pytest.raises(ConfigError, match="empty"):
        load_spec(tmp_path / "empty.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_spec(tmp_path / "list.yaml")


def test_registering_stores_the_spec_once_by_content(registry: Registry) -> None:
    spec = parse_spec(LOAN)
    first = register_spec(registry, spec)
    again = register_spec(registry, parse_spec(spec.model_dump_json()))
    assert first.created and not again.created
    assert first.digest == again.digest == spec.digest
    assert registry.get_bytes(spec.digest)  # content-hashed blob of the canonical JSON
    assert get_registered_spec(registry, "loan-default") == spec
    changed = parse_spec(LOAN.replace("cooldown_minutes: 60", "cooldown_minutes: 5"))
    assert register_spec(registry, changed).created
    [summary] = list_registered_pipelines(registry)
    assert summary.cooldown_minutes == 5
    with pytest.raises(NotFoundError, match="retrain pipelines register"):
        get_registered_spec(registry, "no-such-pipeline")
