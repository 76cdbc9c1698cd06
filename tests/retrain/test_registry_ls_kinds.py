"""``retrain registry ls`` says what each blob is (kind, model, version), filters by kind and
model, and shows short copyable digests unless ``--wide``/``--json``; ``retrain models
history`` shortens digests the same way."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from registry.store import Registry
from retrain.config.spec_store import register_spec
from retrain.config.specs import DEFAULT_SPECS_DIR, load_spec
from retrain.testing_cli import run_cli as retrain
from retrain.testing_serving import register_test_bundle
from tasks.data.simulator import simulate
from tasks.data.snapshots import take_snapshot

MODEL = "loan-default"


def _rows(table: str) -> dict[str, list[str]]:
    """Table rows by their first cell (the digest)."""
    rows = {}
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("│").split("│")]
        if cells[0].startswith("sha256:"):
            rows[cells[0]] = cells
    return rows


@pytest.fixture
def blobs(registry: Registry, home: Path) -> dict[str, str]:
    """One blob of each kind a user meets, by kind."""
    register_spec(registry, load_spec(DEFAULT_SPECS_DIR / f"{MODEL}.yaml"))
    register_test_bundle(registry, MODEL, champion=True)
    register_test_bundle(registry, "other-model", seed=1)
    catalog = registry.catalog
    batch = take_snapshot(registry, MODEL, simulate(50, seed=1))
    holdout = take_snapshot(registry, f"{MODEL}-holdout", simulate(20, seed=2))
    card = registry.put_bytes(b"# Model card", media_type="text/markdown")
    catalog.register_artifact(
        "model_card", f"{MODEL}-v1", card, meta={"model": MODEL, "version": 1}
    )
    report = registry.put_bytes(b"<html>drift</html>", media_type="text/html")
    catalog.register_artifact("drift_report", f"{MODEL}-monitor", report)
    spec, contract = (
        catalog.latest_artifact("pipeline_spec", MODEL),
        catalog.latest_artifact("contract", MODEL),
    )
    assert spec is not None and contract is not None
    bundle = catalog.get_model_version(MODEL, 1).bundle_digest
    other = catalog.get_model_version("other-model", 1).bundle_digest
    return {
        "bundle": bundle,
        "weights": json.loads(registry.get_bytes(bundle))["weights"]["digest"],
        "other bundle": other,
        "other weights": json.loads(registry.get_bytes(other))["weights"]["digest"],
        "snapshot": batch.digest,
        "holdout": holdout.digest,
        "model-card": card,
        "drift-report": report,
        "spec": spec.digest,
        "contract": contract.digest,
        "other": registry.put_bytes(b"put by hand"),
    }


def test_ls_names_each_blob_with_short_digests(blobs: dict[str, str]) -> None:
    code, output = retrain("registry", "ls")
    assert code == 0, output
    rows = _rows(output)
    assert len(rows) == len(blobs) and blobs["bundle"] not in output  # only short forms
    short = {kind: digest[:19] for kind, digest in blobs.items()}  # sha256: + 12 hex
    # digest, kind, model, version, size, media type, stored
    assert rows[short["bundle"]][1:4] == ["bundle", MODEL, "1"]
    assert rows[short["weights"]][1:4] == ["bundle", MODEL, "1"]  # the bundle's second blob
    assert rows[short["other bundle"]][1:4] == ["bundle", "other-model", "1"]
    assert rows[short["snapshot"]][1:3] == ["snapshot", MODEL]
    assert rows[short["holdout"]][1:3] == ["holdout", MODEL]
    assert rows[short["model-card"]][1:4] == ["model-card", MODEL, "1"]
    assert rows[short["drift-report"]][1:3] == ["drift-report", MODEL]
    assert rows[short["spec"]][1:3] == ["spec", MODEL]
    assert rows[short["contract"]][1:3] == ["contract", MODEL]
    assert rows[short["other"]][1:3] == ["other", "-"]


@pytest.mark.parametrize(
    ("options", "kinds"),
    [
        (["--kind", "holdout"], ["holdout"]),
        (["--kind", "model card"], ["model-card"]),
        (["--kind", "drift_report"], ["drift-report"]),
        (["--model", "other-model"], ["other bundle", "other weights"]),
        (["--model", MODEL, "--kind", "bundle"], ["bundle", "weights"]),
    ],
)
def test_ls_filters_by_kind_and_model(
    blobs: dict[str, str], options: list[str], kinds: list[str]
) -> None:
    code, output = retrain("registry", "ls", "--wide", *options)
    assert code == 0, output
    assert sorted(_rows(output)) == sorted(blobs[kind] for kind in kinds)


def test_ls_json_and_wide_give_full_digests(blobs: dict[str, str]) -> None:
    code, output = retrain("registry", "ls", "--json", "--kind", "spec")
    assert code == 0, output
    listed = json.loads(output)
    assert [(b["digest"], b["kind"], b["model"]) for b in listed] == [
        (blobs["spec"], "spec", MODEL)
    ]
    assert listed[0]["size"] > 0 and listed[0]["media type"] == "application/json"
    code, wide = retrain("registry", "ls", "--wide")
    assert code == 0 and all(digest in wide for digest in blobs.values())


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--kind", "weights"], "error: --kind 'weights' is not a kind: use one of bundle, "),
        (["--model", "nobody"], "error: no model named 'nobody': see `retrain models ls`"),
    ],
)
def test_ls_refuses_an_unknown_kind_or_model_in_one_line(
    blobs: dict[str, str], options: list[str], message: str
) -> None:
    code, output = retrain("registry", "ls", *options)
    assert code == 2 and output.strip().count("\n") == 0 and output.startswith(message), output


def test_history_shortens_digests_unless_wide(registry: Registry, blobs: dict[str, str]) -> None:
    report = blobs["drift-report"]
    registry.catalog.append_event(
        "drift.detected", model=MODEL, reason="3 of 17 columns drifted", actor="monitor-drift",
        payload={"drifted_share": 0.18, "report_digest": report},
    )  # fmt: skip
    code, short = retrain("models", "history", MODEL)
    assert code == 0, short
    assert report not in short and f"report_digest={report[:19]}" in short
    code, wide = retrain("models", "history", MODEL, "--wide")
    assert code == 0 and f"report_digest={report}" in wide
