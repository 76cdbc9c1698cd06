"""Hostile input to the model server: numbers that are not numbers, labels that do not fit,
and a fuzz pass over predict instances and feedback bodies. Each is refused with one 4xx line
naming the field, and a refused request moves no counter: not the stats the canary analysis
reads, not a Prometheus series, not the feedback log. The model's own failure on a valid
instance is still counted. Limits, request ids and credentials: ``test_serving_limits``.

The server runs in process on a manual clock (``limited``, ``counters``: ``conftest``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from serving.faults import FaultInjector, FaultSpec
from serving.server import ModelServer

MODEL = "loans"
Rows = tuple[list[dict[str, Any]], list[float]]
Limited = Callable[..., TestClient]
PREDICT = f"/v1/models/{MODEL}:predict"
FEEDBACK = f"/v1/models/{MODEL}:feedback"


def strict_json(text: str) -> Any:
    """Parse as a strict JSON reader would: NaN and Infinity are not JSON."""

    def refuse(name: str) -> Any:
        raise AssertionError(f"{name} in a JSON answer: {text[:200]}")

    return json.loads(text, parse_constant=refuse)


def raw_post(client: TestClient, path: str, text: str, **headers: str) -> Any:
    return client.post(path, content=text.encode(), headers=headers)


def with_raw(document: Any, raw: str) -> str:
    """``document`` as JSON with the string ``"RAW"`` replaced by ``raw`` verbatim (``NaN``,
    ``1e400``: what a hostile sender writes, and ``json.dumps`` would not)."""
    return json.dumps(document).replace('"RAW"', raw)


# -- numbers ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "value",
    ["NaN", "Infinity", "-Infinity", "1e400", "1e308", "-1e300", "9" * 4000, "true", "false"],
    ids=["nan", "inf", "-inf", "1e400", "1e308", "-1e300", "4000-digits", "true", "false"],
)
def test_an_instance_that_is_not_a_finite_number_is_refused_and_counts_nowhere(
    set_canary: Any,
    counters: Any,
    register: Any,
    limited: Limited,
    rows: Rows,
    value: str,
) -> None:
    register(champion=True)
    set_canary(register(tag="canary"))
    client = limited()
    before = counters(client)
    body = with_raw({"instances": [{**rows[0][0], "credit_score": "RAW"}]}, value)
    # X-Request-Key lets a caller pick the canary; their bad input must still not count there.
    answer = raw_post(client, PREDICT, body, **{"X-Request-Key": "attacker"})
    assert answer.status_code == 422, answer.text
    assert strict_json(answer.text)["field"] == "credit_score"
    assert "credit_score" in answer.json()["error"]
    assert counters(client) == before
    assert client.post(PREDICT, json={"instances": [rows[0][0]]}).status_code == 200


@pytest.mark.parametrize(
    ("label", "why"),
    [("NaN", "finite"), ("Infinity", "finite"), ("1e308", "within [0, 1]"),
     ("-1e308", "within [0, 1]"), ("9" * 4000, "within [0, 1]"), ("true", "finite"),
     ('"1"', "finite"), ("2", "within [0, 1]")],
    ids=["nan", "inf", "1e308", "-1e308", "4000-digits", "true", "string", "two"],
)  # fmt: skip
def test_a_feedback_label_that_does_not_fit_is_refused_and_poisons_nothing(
    counters: Any, register: Any, limited: Limited, rows: Rows, label: str, why: str
) -> None:
    register(champion=True)
    client = limited()
    rid = client.post(PREDICT, json={"instances": [rows[0][0]]}).json()["request_id"]
    before = counters(client)
    body = with_raw({"feedback": [{"request_id": rid, "labels": ["RAW"]}]}, label)
    answer = raw_post(client, FEEDBACK, body)
    assert answer.status_code == 422 and strict_json(answer.text)["field"] == "labels"
    assert why in answer.json()["error"]
    assert counters(client) == before  # nothing scored, the answer still awaits its label
    good = client.post(FEEDBACK, json={"feedback": [{"request_id": rid, "labels": [1]}]})
    assert good.json() == {"accepted": 1, "unknown": 0}
    stats = strict_json(client.get(f"/v1/models/{MODEL}:stats").text)
    loss = stats["series"][0]["feedback"]["loss_sum"]
    assert stats["series"][0]["feedback"]["count"] == 1 and 0.0 <= loss <= 1.0


def test_one_bad_item_refuses_the_whole_feedback_request(
    counters: Any, register: Any, limited: Limited, rows: Rows
) -> None:
    register(champion=True)
    client = limited()
    ids = [client.post(PREDICT, json={"instances": [r]}).json()["request_id"] for r in rows[0][:2]]
    before = counters(client)
    items = [{"request_id": ids[0], "labels": [1]}, {"request_id": ids[1], "labels": [1, 0]}]
    answer = client.post(FEEDBACK, json={"feedback": items})
    assert answer.status_code == 422 and "feedback[1].labels" in answer.json()["error"]
    assert counters(client) == before  # the first item was not applied either


def test_a_model_that_fails_on_a_valid_instance_is_still_counted(
    set_canary: Any,
    counters: Any,
    register: Any,
    limited: Limited,
    faults: FaultInjector,
    rows: Rows,
) -> None:
    register(champion=True)
    canary = register(tag="predicts NaN")
    set_canary(canary)
    faults.set(MODEL, canary, FaultSpec(prediction_shift=math.nan))
    client = limited()
    answer = client.post(PREDICT, json={"instances": [rows[0][0]]})
    body = strict_json(answer.text)  # the champion answered for it, in valid JSON
    assert answer.status_code == 200 and body["variant"] == "champion"
    series = {s["variant"]: s for s in counters(client)[0]}
    assert (series["canary"]["requests"], series["canary"]["errors"]) == (1, 1)
    faults.set(MODEL, 1, FaultSpec(prediction_shift=math.inf))  # and the champion too
    failed = client.post(PREDICT, json={"instances": [rows[0][0]]})
    assert failed.status_code == 500 and "non-finite" in strict_json(failed.text)["error"]
    assert {s["variant"]: s["errors"] for s in counters(client)[0]} == {"canary": 2, "champion": 1}


def test_stats_write_a_non_finite_statistic_as_null(
    register: Any, limited: Limited, rows: Rows
) -> None:
    register(champion=True)
    client = limited()
    client.post(PREDICT, json={"instances": [rows[0][0]]})
    server: ModelServer = client.app.state.server  # type: ignore[attr-defined]
    next(iter(server.book)).feedback_loss_sum = math.nan  # however it got there
    stats = strict_json(client.get(f"/v1/models/{MODEL}:stats").text)
    assert stats["series"][0]["feedback"]["loss_sum"] is None


# -- fuzz ---------------------------------------------------------------------------------------
# Raw literals a hostile sender can write: ``"RAW:<text>"`` strings are put in verbatim.
_LITERALS = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1e308", "1e-400", "-0",
             "9" * 400, "true", "null", "[]", "{}", '"12"', '""']  # fmt: skip
_VALUES = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.sampled_from(_LITERALS).map(lambda text: f"RAW:{text}"),
    st.text(max_size=12),
    st.booleans(),
    st.none(),
)


def _encode(document: Any) -> str:
    """``document`` as JSON, each ``"RAW:<text>"`` string replaced by ``<text>`` verbatim."""
    raw = r'"RAW:((?:[^"\\]|\\.)*)"'
    return re.sub(raw, lambda m: str(json.loads(f'"{m[1]}"')), json.dumps(document))


def _instance(rows: list[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """A real instance, or one with a few features replaced by hostile values, dropped or added."""
    features = sorted(rows[0])

    @st.composite
    def instance(draw: st.DrawFn) -> dict[str, Any]:
        row = dict(draw(st.sampled_from(rows)))
        if draw(st.booleans()):
            return row  # half the instances are real: batches mix good and bad
        for key in draw(st.lists(st.sampled_from([*features, "extra"]), max_size=3)):
            if draw(st.integers(0, 4)):
                row[key] = draw(_VALUES)
            else:
                row.pop(key, None)
        return row

    return instance()


def _mutated(rows: list[dict[str, Any]]) -> st.SearchStrategy[Any]:
    """Predict bodies: lists of such instances, or something else where they should be."""
    instances = st.lists(_instance(rows), min_size=0, max_size=4)
    return st.one_of(
        st.fixed_dictionaries({"instances": instances}),
        st.fixed_dictionaries({"instances": _VALUES}),
        st.fixed_dictionaries({"instances": instances, "request_key": _VALUES}),
        _VALUES,
    )


def test_fuzzed_predict_bodies_never_get_a_5xx_a_nan_or_a_counter(
    set_canary: Any,
    counters: Any,
    register: Any,
    limited: Limited,
    rows: Rows,
) -> None:
    register(champion=True)
    set_canary(register(tag="canary"))
    client = limited(max_instances=3)

    @settings(max_examples=150, deadline=None, derandomize=True, database=None)
    @given(_mutated(rows[0][:50]), st.sampled_from([None, "a", "b", "c"]))
    def check(document: Any, key: str | None) -> None:
        before = counters(client)
        headers = {"X-Request-Key": key} if key else {}
        answer = client.post(PREDICT, content=_encode(document).encode(), headers=headers)
        assert answer.status_code < 500, answer.text
        body = strict_json(answer.text)
        if answer.status_code == 200:
            assert all(0.0 <= p <= 1.0 for p in body["predictions"])
        else:
            assert answer.status_code in (400, 413, 422) and body["error"] and body["field"]
            assert counters(client) == before

    check()


def test_fuzzed_feedback_bodies_never_get_a_5xx_a_nan_or_a_counter(
    counters: Any, register: Any, limited: Limited, rows: Rows
) -> None:
    register(champion=True)
    client = limited()
    ids = [client.post(PREDICT, json={"instances": [r]}).json()["request_id"] for r in rows[0][:40]]
    item = st.fixed_dictionaries(
        {"request_id": st.one_of(st.sampled_from(ids), _VALUES)},
        optional={"labels": st.one_of(st.lists(_VALUES, max_size=2), _VALUES), "label": _VALUES},
    )
    many = st.fixed_dictionaries({"feedback": st.lists(item, max_size=3)})
    bodies = st.one_of(many, item, _VALUES)

    @settings(max_examples=150, deadline=None, derandomize=True, database=None)
    @given(bodies)
    def check(document: Any) -> None:
        before = counters(client)
        answer = client.post(FEEDBACK, content=_encode(document).encode())
        assert answer.status_code < 500, answer.text
        body = strict_json(answer.text)
        if answer.status_code != 200:
            assert answer.status_code in (400, 422) and body["error"] and body["field"]
            assert counters(client) == before
        for series in counters(client)[0]:
            assert 0.0 <= series["feedback"]["loss_sum"] <= series["feedback"]["count"]

    check()


def test_a_large_batch_is_judged_exactly_as_row_by_row(
    rows: Rows, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Large batches take numpy's columnar path: same standardised values, same first error."""
    from models import preprocessing
    from retrain.testing_serving import sample_preprocessor

    pre = sample_preprocessor()

    def judged(batch: list[dict[str, Any]]) -> Any:
        try:
            num, cat = pre.transform_records(batch)
        except preprocessing.InvalidInstanceError as exc:
            return str(exc), exc.field
        return num.tolist(), cat.tolist()

    real = st.lists(st.sampled_from(rows[0][:50]), min_size=16, max_size=40)
    swaps = st.lists(st.tuples(st.integers(0, 39), _instance(rows[0][:50])), max_size=2)

    @settings(max_examples=60, deadline=None, derandomize=True, database=None)
    @given(real, swaps)
    def check(batch: list[dict[str, Any]], swapped: list[tuple[int, dict[str, Any]]]) -> None:
        batch = list(batch)
        for at, hostile in swapped:
            batch[at % len(batch)] = hostile
        batch = json.loads(_encode(batch))  # NaN, 1e400 and 400-digit integers as parsed
        columnar = judged(batch)
        monkeypatch.setattr(preprocessing, "_COLUMNAR_MIN_ROWS", 10**9)
        try:
            assert judged(batch) == columnar
        finally:
            monkeypatch.undo()

    check()
    assert judged(rows[0][:40])[0][0] == pytest.approx(pre.transform_records(rows[0][:1])[0][0])
