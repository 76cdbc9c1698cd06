"""``/metrics`` exports the CPU time each version spent predicting
(``retrain_predict_cpu_seconds_total{model,version}``), beside its prediction counters: it
grows with predictions, small and large batches alike, and a refused request moves it not."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from serving.server import INLINE_INSTANCES

MODEL = "loans"
PREDICT = f"/v1/models/{MODEL}:predict"
Rows = tuple[list[dict[str, Any]], list[float]]


def _samples(client: TestClient, name: str) -> dict[tuple[str, str], float]:
    out: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == name:
                out[(sample.labels["model"], sample.labels["version"])] = sample.value
    return out


def test_cpu_seconds_follow_predictions_and_not_refusals(
    register: Any, limited: Callable[..., TestClient], rows: Rows
) -> None:
    version = register(champion=True)
    client = limited(max_instances=500)
    assert _samples(client, "retrain_predict_cpu_seconds_total") == {}  # nothing predicted yet
    for start in range(0, 200, 2):  # small batches, scored on the event loop
        answer = client.post(PREDICT, json={"instances": rows[0][start : start + 2]})
        assert answer.status_code == 200
    small = _samples(client, "retrain_predict_cpu_seconds_total")[(MODEL, str(version))]
    assert small > 0
    large = rows[0][: INLINE_INSTANCES * 40]  # scored on a prediction thread
    assert client.post(PREDICT, json={"instances": large}).status_code == 200
    cpu = _samples(client, "retrain_predict_cpu_seconds_total")[(MODEL, str(version))]
    assert cpu > small
    predictions = _samples(client, "retrain_prediction_value_count")
    assert predictions == {(MODEL, str(version)): 200 + len(large)}

    refused = [
        client.post(PREDICT, content=b"{not json"),  # 400
        client.post(PREDICT, json={"instances": [{"income": 1.0}]}),  # 422: features missing
        client.post(PREDICT, json={"instances": rows[0][:501]}),  # over the limit
    ]
    assert [r.status_code for r in refused] == [400, 422, 422], [r.text for r in refused]
    assert _samples(client, "retrain_predict_cpu_seconds_total") == {(MODEL, str(version)): cpu}
