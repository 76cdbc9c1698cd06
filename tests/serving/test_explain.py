"""``POST /v1/models/<name>:explain`` as a caller meets it: attributions that add up to the
model's logit less the base value, the version that would answer ``:predict`` for the same key,
no prediction counter moved, the caller's mistakes answered 4xx like predict's, and a version
with no stored background explained against its preprocessor's baseline."""

from __future__ import annotations

import io
import json
import math
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from models.config import ModelConfig, TrainingConfig
from registry.release import acquire_release_lock, publish_weight
from registry.store import Registry
from retrain.config.settings import Settings
from retrain.config.wiring import build_registry
from retrain.testing_serving import InProcessServer, register_test_bundle, serve_in_process
from serving.explain import MAX_EXPLAIN_INSTANCES
from serving.routing import sticky_bucket
from tasks.data.simulator import FEATURES, FEATURES_CATEGORICAL, FEATURES_NUMERIC, simulate
from tasks.training.fit import train_model
from tasks.training.plan import TrainingPlan, TrainingRun

MODEL = "loans"
EXPLAIN = f"/v1/models/{MODEL}:explain"
PREDICT = f"/v1/models/{MODEL}:predict"
Rows = tuple[list[dict[str, Any]], list[float]]


@pytest.fixture(scope="module")
def trained_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry home holding ``loans`` v1, a genuinely trained champion (trained once)."""
    root = tmp_path_factory.mktemp("explain")
    registry = build_registry(Settings(home=root / "home"))
    plan = TrainingPlan(
        model=MODEL,
        target="default",
        task="binary",
        numeric=FEATURES_NUMERIC,
        categorical=FEATURES_CATEGORICAL,
        architecture=ModelConfig(hidden_sizes=(32,)),
        fitting=TrainingConfig(batch_size=256, patience=2, max_epochs=3),
    )
    try:
        run = TrainingRun(checkpoint_root=root / "checkpoints")
        version = train_model(registry, simulate(3000, seed=1), plan, run).version
        registry.catalog.set_alias(MODEL, "champion", version, expected=None, reason="t", actor="t")
    finally:
        registry.close()
    return root / "home"


@pytest.fixture
def trained(trained_home: Path, tmp_path: Path) -> Iterator[Registry]:
    """A fresh copy of the trained registry for one test."""
    home = tmp_path / "copy"
    shutil.copytree(trained_home, home)
    registry = build_registry(Settings(home=home))
    try:
        yield registry
    finally:
        registry.close()


@contextmanager
def serving(registry: Registry) -> Iterator[InProcessServer]:
    with serve_in_process(registry, [MODEL]) as served:
        yield served


def strict(text: str) -> Any:
    def refuse(name: str) -> Any:
        raise AssertionError(f"{name} in a JSON answer: {text[:200]}")

    return json.loads(text, parse_constant=refuse)


def logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def assert_complete(explanation: dict[str, Any], tolerance: float = 0.05) -> None:
    """Attributions add up to the instance's logit less the base value."""
    total = sum(explanation["attributions"].values())
    gap = logit(explanation["prediction"]) - explanation["base_value"]
    assert abs(total - gap) <= tolerance * max(1.0, abs(gap)), (total, gap)


def test_attributions_add_up_to_the_logit_less_the_base_value(
    trained: Registry, rows: Rows
) -> None:
    instances = rows[0][:5]
    with serving(trained) as served:
        answer = served.client.post(EXPLAIN, json={"instances": instances})
        predicted = served.client.post(PREDICT, json={"instances": instances}).json()
    assert answer.status_code == 200, answer.text
    body = strict(answer.text)
    assert body["model_version"] == 1 and body["variant"] == "champion"
    assert body["method"] == "integrated_gradients" and body["units"] == "logit"
    assert body["background"] == "training-sample"
    assert len(body["explanations"]) == 5
    for explanation, prediction in zip(body["explanations"], predicted["predictions"], strict=True):
        assert set(explanation["attributions"]) == set(FEATURES)
        assert explanation["prediction"] == pytest.approx(prediction, abs=1e-9)
        assert_complete(explanation)
    # A trained model leans on what drives default: some feature moves the logit visibly.
    assert max(abs(v) for v in body["explanations"][0]["attributions"].values()) > 0.01


def test_the_background_is_a_seeded_sample_of_training_features(trained: Registry) -> None:
    lineage = trained.catalog.get_model_version(MODEL, 1).lineage
    sample = pd.read_parquet(io.BytesIO(trained.get_bytes(lineage["background_digest"])))
    assert len(sample) == 64
    assert list(sample.columns) == [*FEATURES_NUMERIC, *FEATURES_CATEGORICAL]  # no target


def _keys(weight: float) -> tuple[str, str]:
    """A request key that lands on the canary at ``weight`` percent, and one that does not."""
    keys = [f"caller-{i}" for i in range(500)]
    canary = next(k for k in keys if sticky_bucket(MODEL, k) < weight)
    champion = next(k for k in keys if sticky_bucket(MODEL, k) >= weight)
    return canary, champion


def test_explain_answers_for_the_version_predict_would(trained: Registry, rows: Rows) -> None:
    canary_version = register_test_bundle(trained, MODEL, seed=3)  # no stored background
    catalog = trained.catalog
    acquire_release_lock(catalog, MODEL, canary_version, ttl_s=600, actor="t")
    publish_weight(catalog, MODEL, canary_version, 50.0, shadow=False)
    catalog.set_alias(MODEL, "canary", canary_version, expected=None, reason="t", actor="t")
    instance = rows[0][7]
    with serving(trained) as served:
        for key, variant, version in zip(_keys(50.0), ("canary", "champion"), (2, 1), strict=True):
            header = {"X-Request-Key": key}
            for _ in range(3):  # sticky: the same key, the same version, every time
                explained = served.client.post(
                    EXPLAIN, json={"instances": [instance]}, headers=header
                )
                in_body = served.client.post(
                    EXPLAIN, json={"instances": [instance], "request_key": key}
                ).json()
                predicted = served.client.post(
                    PREDICT, json={"instances": [instance]}, headers=header
                )
                body = strict(explained.text)
                assert (body["variant"], body["model_version"]) == (variant, version)
                assert (in_body["variant"], in_body["model_version"]) == (variant, version)
                assert predicted.json()["variant"] == variant
                assert predicted.json()["model_version"] == version
                assert body["explanations"][0]["prediction"] == pytest.approx(
                    predicted.json()["predictions"][0], abs=1e-9
                )
                assert_complete(body["explanations"][0])
            expected = "preprocessor-baseline" if variant == "canary" else "training-sample"
            assert body["background"] == expected


def test_explaining_moves_no_prediction_counter(
    trained: Registry, rows: Rows, counters: Callable[..., Any]
) -> None:
    with serving(trained) as served:
        client = served.client
        assert client.post(PREDICT, json={"instances": rows[0][:2]}).status_code == 200
        before = counters(client)
        for i in range(4):
            assert client.post(EXPLAIN, json={"instances": [rows[0][i]]}).status_code == 200
        assert counters(client) == before
        stats = strict(client.get(f"/v1/models/{MODEL}:stats").text)
    assert stats["explain"]["ok"] == 4 and stats["explain"]["error"] == 0
    assert stats["explain"]["recent_latency_s"]["count"] == 4


def test_caller_mistakes_are_answered_4xx_as_predict_does(
    trained: Registry, rows: Rows, counters: Callable[..., Any]
) -> None:
    good = rows[0][0]
    lacking = {k: v for k, v in good.items() if k != "credit_score"}
    bodies = [
        b"{not json",
        b"[1, 2]",
        b'{"instances": []}',
        b'{"instances": [1]}',
        json.dumps({"instances": [lacking]}).encode(),
        json.dumps({"instances": [{**good, "age": "old"}]}).encode(),
        b'{"instances": [{"age": NaN}]}',
        json.dumps({"instances": [good], "request_key": 7}).encode(),
    ]
    with serving(trained) as served:
        client = served.client
        before = counters(client)
        for body in bodies:
            explained = client.post(EXPLAIN, content=body)
            predicted = client.post(PREDICT, content=body)
            assert 400 <= explained.status_code < 500, (body, explained.text)
            assert explained.status_code == predicted.status_code, body
            assert explained.json()["error"] and "\n" not in explained.json()["error"]
        assert counters(client) == before
        missing = client.post(EXPLAIN, content=bodies[4])
        assert missing.status_code == 422 and missing.json()["field"] == "credit_score"
        unknown = client.post("/v1/models/nobody:explain", json={"instances": [good]})
        assert unknown.status_code == 404 and "nobody" in unknown.json()["error"]
        many = client.post(EXPLAIN, json={"instances": [good] * (MAX_EXPLAIN_INSTANCES + 1)})
        assert many.status_code == 422 and many.json()["field"] == "instances"
        assert f"at most {MAX_EXPLAIN_INSTANCES}" in many.json()["error"]


def test_a_version_without_background_is_explained_against_its_baseline(
    registry: Registry, rows: Rows
) -> None:
    register_test_bundle(registry, MODEL, seed=5, champion=True)
    with serving(registry) as served:
        answer = served.client.post(EXPLAIN, json={"instances": rows[0][:3]})
        bundle = served.server.follower.routes[MODEL].champion.bundle  # type: ignore[union-attr]
    body = strict(answer.text)
    assert answer.status_code == 200 and body["background"] == "preprocessor-baseline"
    pre = bundle.preprocessor
    baseline = {name: mean for name, mean in zip(pre.numeric, pre.means, strict=True)}
    baseline |= {name: pre.vocabularies[name][0] for name in pre.categorical}
    base_p = float(bundle.predict([baseline])[0])
    for explanation in body["explanations"]:
        assert explanation["base_value"] == pytest.approx(logit(base_p), abs=1e-4)
        assert_complete(explanation)
