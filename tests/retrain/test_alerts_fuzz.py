"""A fuzz pass over the alert receiver's four routes, over loopback HTTP, on either database.

Each example is a valid document of the route's shape with up to two slots made hostile (NUL,
lone surrogates, over-long text, rule-breaking model names, NaN, 5000-digit numbers, deep
nesting, wrong types, new keys), encoded as ASCII or raw UTF-8 (raw surrogates then), sometimes
cut short. Whatever comes in: never a 5xx, a refused body leaves no row, and a stored alert's
model follows the model-name rule.
"""

from __future__ import annotations

import json
import re
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from registry.store import Registry
from retrain.config.spec_yaml import MODEL_NAME_PATTERN

pytestmark = pytest.mark.realtime
MODEL_NAME = re.compile(MODEL_NAME_PATTERN)

# -- fuzzing: a valid document of each route's shape, then a few of its slots made hostile --------
_BIG, _DEEP = "\x01big\x01", "\x01deep\x01"  # stand-ins, swapped for raw text once encoded
_plain = st.sampled_from(["loan-default", "churn", "no-such-model", "drift"]) | st.text(
    "ab-", max_size=6
)
_hostile_text = st.one_of(
    st.text(st.characters(exclude_categories=()), max_size=12),  # surrogates and NUL too
    st.sampled_from(["../../../etc/passwd", "Loan Default", "x" * 1100, "m" * 300, _BIG, _DEEP]),
    st.sampled_from(["", "\x00", "\ud800", "a\udfffb", " loan-default", "loan-default\n"]),
)
_hostile = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), _hostile_text, st.just(1e308)),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(_hostile_text, kids, max_size=3),
    max_leaves=8,
)
_labels = st.dictionaries(st.sampled_from(["team", "severity"]), _plain, max_size=2)
_alert = st.builds(
    lambda status, model, labels, summary: {
        "status": status,
        "labels": {**labels, "model": model},
        "annotations": {"summary": summary},
    },
    st.sampled_from(["firing", "resolved"]),
    st.sampled_from(["loan-default", "churn", "no-such-model", "../../x", "Bad Name"]),
    _labels,
    _plain,
)
_VALID = {
    "alertmanager": st.fixed_dictionaries(
        {
            "version": st.just("4"),
            "groupKey": _plain.map(lambda key: "g" + key),
            "status": st.just("firing"),
            "alerts": st.lists(_alert, min_size=1, max_size=4),
        },
        optional={"commonLabels": _labels, "receiver": _plain},
    ),
    "evidently": st.fixed_dictionaries(
        {"model": st.sampled_from(["loan-default", "churn"])},
        optional={"drift_share": st.floats(0, 1), "drifted_columns": st.lists(_plain, max_size=3)},
    ),
    "generic": st.fixed_dictionaries(
        {"model": st.sampled_from(["loan-default", "churn"])},
        optional={"reason": _plain, "dedup_key": _plain.map(lambda key: "k" + key)},
    ),
}
_VALID["grafana"] = _VALID["alertmanager"]
# Up to two slots of the document (an existing value, or a new key) get a hostile value.
_EDITS = st.lists(st.tuples(st.integers(0, 63), _hostile_text, _hostile), max_size=2)
# A body cut short one time in four; whole otherwise.
_CUTS = st.sampled_from([None, None, None, 400]).flatmap(
    lambda cut: st.none() if cut is None else st.integers(0, cut)
)


def _slots(value: Any) -> list[tuple[Any, Any]]:
    """Every (container, key or index) in ``value``, depth first."""
    found: list[tuple[Any, Any]] = []
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in items:
        found.append((value, key))
        if isinstance(item, dict | list) and item:
            found.extend(_slots(item))
    return found


def _edited(document: dict[str, Any], edits: list[tuple[int, str, Any]]) -> dict[str, Any]:
    for which, new_key, value in edits:
        container, key = _slots(document)[which % len(_slots(document))]
        if isinstance(container, dict) and which % 2:
            container[new_key] = value
        else:
            container[key] = value
    return document


def _encode(document: Any, ascii_only: bool, cut: int | None) -> bytes:
    text = json.dumps(document, ensure_ascii=ascii_only)  # NaN and Infinity as Python writes them
    for stand_in, raw in ((_BIG, "9" * 5000), (_DEEP, "[" * 2000 + "]" * 2000)):
        text = text.replace(json.dumps(stand_in, ensure_ascii=ascii_only), raw)
    body = text.encode("utf-8", "surrogatepass")  # raw (invalid) surrogate bytes when not ASCII
    return body if cut is None else body[:cut]


@pytest.mark.parametrize("source", sorted(_VALID))
def test_fuzzed_alerts_never_get_a_5xx_nor_leave_a_row_when_refused(
    any_registry: Registry, kit: SimpleNamespace, source: str
) -> None:
    with kit.serve_receiver(any_registry) as http:

        @settings(max_examples=120, deadline=None, derandomize=True, database=None)
        @given(_VALID[source], _EDITS, st.booleans(), _CUTS)
        def post(document: Any, edits: Any, ascii_only: bool, cut: int | None) -> None:
            body = _encode(_edited(document, edits), ascii_only, cut)
            before = kit.inbox_rows(any_registry)
            answer = http.post(f"/alerts/{source}", content=body)
            assert answer.status_code < 500, answer.text
            if answer.status_code != 202:
                assert kit.inbox_rows(any_registry) == before, answer.text
                assert answer.json()["error"]  # one line saying what was wrong
                return
            for stored in answer.json()["alerts"]:
                assert MODEL_NAME.fullmatch(stored["model"]), stored

        post()
