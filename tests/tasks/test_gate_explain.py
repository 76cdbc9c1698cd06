"""Feature attributions at the gate: the card ranks what each model relies on and flags a
feature whose importance collapsed or jumped against the champion.

Two loans models are trained once per module: v1 on clean applications, v2 on the same rows
with ``debt_to_income`` shuffled, so v2 cannot have learnt anything from it.
"""

from __future__ import annotations

import json
from typing import Any
from xml.etree import ElementTree

import numpy as np
import pandas as pd
import pytest

from models.config import ModelConfig, TrainingConfig
from retrain.config.settings import Settings
from retrain.config.wiring import build_registry
from tasks.data.simulator import TARGET, simulate
from tasks.gate.card_explain import share_bar
from tasks.gate.evaluate import GateRules, evaluate_candidate
from tasks.training.fit import train_model
from tasks.training.plan import TrainingRun, loans_plan

MODEL = "loan-default"
BLINDED = "debt_to_income"
RULES = GateRules(latency_p95_ms=250.0, explain_rows=2000)


@pytest.fixture(scope="module")
def trained_home(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("gate-explain")
    registry = build_registry(Settings(home=root / "home"))
    plan = loans_plan(
        MODEL,
        architecture=ModelConfig(hidden_sizes=(32,)),
        fitting=TrainingConfig(batch_size=256, patience=2, max_epochs=6),
    )
    run = TrainingRun(checkpoint_root=root / "checkpoints")
    clean = simulate(4000, seed=1)
    blind = clean.copy()
    blind[BLINDED] = np.random.default_rng(5).permutation(blind[BLINDED].to_numpy())
    try:
        versions = {
            "clean": train_model(registry, clean, plan, run).version,
            "blind": train_model(registry, blind, plan, run).version,
        }
    finally:
        registry.close()
    return {"home": root / "home", "versions": versions, "holdout": simulate(3000, seed=99)}


def _card(trained: dict[str, Any], version: int) -> str:
    artifact = trained["registry"].catalog.latest_artifact("model_card", f"{MODEL}-v{version}")
    assert artifact is not None
    text: str = trained["registry"].get_bytes(artifact.digest).decode()
    return text


def _table_row(card: str, feature: str) -> str:
    return next(line for line in card.splitlines() if line.startswith(f"| {feature} |"))


def test_a_feature_whose_signal_was_removed_is_flagged_as_collapsed(
    trained: dict[str, Any],
) -> None:
    reg, v = trained["registry"], trained["versions"]
    decision = evaluate_candidate(
        reg, MODEL, v["blind"], trained["holdout"], RULES, against=v["clean"]
    )
    attributions = decision.attributions
    assert attributions is not None and attributions.rows == 2000
    assert [f.feature for f in attributions.flagged] == [BLINDED]
    blinded = attributions.flagged[0]
    assert blinded.flag == "collapsed" and blinded.change is not None and blinded.change < 1 / 3
    assert blinded.mean_abs_ig is not None and blinded.champion_mean_abs_ig is not None
    assert blinded.mean_abs_ig < blinded.champion_mean_abs_ig / 2
    card = _card(trained, v["blind"])
    verdict_area = card.split("## Checks")[0]
    assert f"importance of {BLINDED} collapsed to" in verdict_area
    assert "## Feature attributions" in card
    assert "| feature | importance share | candidate | champion | change |" in card
    assert "**collapsed**" in _table_row(card, BLINDED)
    # ranked by the candidate's importance, every feature once
    rows = [line for line in card.splitlines() if line.startswith("| ") and " ± " in line]
    assert len(rows) == 17
    top = attributions.features[0]
    assert rows[0].startswith(f"| {top.feature} |") and "█" * 16 in rows[0]
    # on record: the gate event's payload carries them, as strict JSON
    event = reg.catalog.events(MODEL, kinds=["gate.decision"])[-1]
    recorded = event.payload["attributions"]
    assert [f["feature"] for f in recorded["features"] if f["flag"]] == [BLINDED]
    json.dumps(event.payload, allow_nan=False)
    # and a bar chart of the shares, stored as SVG
    chart = reg.catalog.latest_artifact("attributions_chart", f"{MODEL}-v{v['blind']}")
    assert chart is not None and chart.meta["flagged"] == [BLINDED]
    svg = ElementTree.fromstring(reg.get_bytes(chart.digest))
    texts = [t.text or "" for t in svg.iter("{http://www.w3.org/2000/svg}text")]
    assert BLINDED in texts and any(t.endswith("collapsed") for t in texts)
    assert len(list(svg.iter("{http://www.w3.org/2000/svg}rect"))) == 2 * 17


def test_the_other_way_round_its_importance_jumped(trained: dict[str, Any]) -> None:
    reg, v = trained["registry"], trained["versions"]
    decision = evaluate_candidate(
        reg, MODEL, v["clean"], trained["holdout"], RULES, against=v["blind"], record=False
    )
    assert decision.attributions is not None
    assert [(f.feature, f.flag) for f in decision.attributions.flagged] == [(BLINDED, "jumped")]
    assert decision.attributions.notes[0].startswith(f"importance of {BLINDED} jumped ")
    assert decision.attributions.notes[0].endswith("x against the champion")


def test_a_first_model_gets_its_ranking_without_comparison(trained: dict[str, Any]) -> None:
    reg, v = trained["registry"], trained["versions"]
    decision = evaluate_candidate(reg, MODEL, v["clean"], trained["holdout"], RULES, against=None)
    assert decision.attributions is not None and not decision.attributions.flagged
    shares = [f.share or 0.0 for f in decision.attributions.features]
    assert abs(sum(shares) - 1.0) < 1e-9 and shares == sorted(shares, reverse=True)
    card = _card(trained, v["clean"])
    assert "## Feature attributions" in card and "Attribution shift" not in card
    assert _table_row(card, BLINDED).split(" | ")[3] == "-"  # no champion column value


def test_no_nan_reaches_the_record_when_the_metric_is_undefined(trained: dict[str, Any]) -> None:
    """A holdout of one class has no AUC, so no permutation importance: None, not NaN."""
    reg, v = trained["registry"], trained["versions"]
    one_class = trained["holdout"][trained["holdout"][TARGET] == 0]
    decision = evaluate_candidate(reg, MODEL, v["blind"], one_class, RULES, against=None)
    assert decision.attributions is not None
    assert all(f.importance is None for f in decision.attributions.features)
    assert all(f.mean_abs_ig is not None for f in decision.attributions.features)
    json.dumps(decision.to_dict(), allow_nan=False)
    json.dumps(decision.attributions.to_dict(), allow_nan=False)
    assert "## Feature attributions" in _card(trained, v["blind"])


def test_explain_rows_zero_turns_attributions_off(trained: dict[str, Any]) -> None:
    reg, v = trained["registry"], trained["versions"]
    off = RULES.model_copy(update={"explain_rows": 0})
    decision = evaluate_candidate(
        reg, MODEL, v["blind"], trained["holdout"], off, against=v["clean"]
    )
    assert decision.attributions is None and decision.to_dict()["attributions"] is None
    assert "Feature attributions" not in _card(trained, v["blind"])


def test_the_share_bar_fills_in_eighths() -> None:
    assert share_bar(1.0, 1.0, width=4) == "████"
    assert share_bar(0.5, 1.0, width=4) == "██  "
    assert share_bar(0.0625, 1.0, width=4) == "▎   "
    assert share_bar(0.3, 0.0, width=4) == "    "


@pytest.mark.usefixtures("prefect_harness")
def test_in_a_flow_the_attributions_are_a_table_artifact(trained: dict[str, Any]) -> None:
    from prefect import flow
    from prefect.artifacts import Artifact
    from prefect.client.schemas.objects import Artifact as StoredArtifact

    reg, v = trained["registry"], trained["versions"]
    holdout: pd.DataFrame = trained["holdout"]

    @flow(name="gate-explain")
    def gate() -> str:
        return evaluate_candidate(
            reg, MODEL, v["blind"], holdout, RULES, against=v["clean"]
        ).verdict

    gate()
    artifact = Artifact.get(f"attributions-{MODEL}")
    assert isinstance(artifact, StoredArtifact) and artifact.type == "table"
    assert BLINDED in str(artifact.data) and BLINDED in (artifact.description or "")
    chart = reg.catalog.latest_artifact("attributions_chart", f"{MODEL}-v{v['blind']}")
    link = Artifact.get(f"attributions-{MODEL}-chart")  # Prefect keeps a link as markdown
    assert chart is not None and isinstance(link, StoredArtifact)
    assert chart.digest.removeprefix("sha256:") in str(link.data)
