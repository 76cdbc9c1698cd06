"""Categories survive the round trip from a CSV to a client: ``3``, ``3.0`` and ``"3"`` are
one category at training and at prediction time, and bundles stored before keep working."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.categories import category_name, category_names
from models.preprocessing import UNKNOWN_CODE, Preprocessor


@pytest.fixture
def csv_frame(tmp_path: Path) -> pd.DataFrame:
    """A CSV whose integer category column has one blank cell: pandas reads it as floats."""
    path = tmp_path / "applications.csv"
    path.write_text("income,grade\n10,3\n12,1\n9,\n11,3\n14,2\n13,3\n")
    frame = pd.read_csv(path)
    assert frame["grade"].dtype == np.float64  # what made "3.0" categories before
    return frame


def test_json_integer_float_and_string_name_the_category_seen_in_a_csv(
    csv_frame: pd.DataFrame,
) -> None:
    pre = Preprocessor.fit(csv_frame, ["income"], ["grade"], max_categories=10)
    assert pre.vocabularies["grade"] == ("3", "1", "2")
    assert pre.category_kinds == {"grade": "integer"}
    requests = [
        {"income": 10, "grade": 3},
        {"income": 10, "grade": 3.0},
        {"income": 10, "grade": "3"},
    ]
    _, codes = pre.transform_records(requests)
    assert codes[:, 0].tolist() == [1, 1, 1]  # the most frequent category, never unknown
    _, trained = pre.transform(csv_frame)
    assert trained[:, 0].tolist() == [1, 2, UNKNOWN_CODE, 1, 3, 1]  # the blank is unknown
    _, unseen = pre.transform_records([{"income": 10, "grade": 7}, {"income": 1, "grade": None}])
    assert unseen[:, 0].tolist() == [UNKNOWN_CODE, UNKNOWN_CODE]


def test_the_bundle_records_category_types_and_reads_old_vocabularies(
    csv_frame: pd.DataFrame,
) -> None:
    pre = Preprocessor.fit(csv_frame, ["income"], ["grade"], max_categories=10)
    stored = pre.to_dict()
    assert stored["categorical_types"] == {"grade": "integer"}
    assert Preprocessor.from_dict(stored) == pre
    old = {**stored, "categorical": {"grade": ["3.0", "1.0", "2.0"]}}
    del old["categorical_types"]  # a bundle written before types were recorded
    revived = Preprocessor.from_dict(old)
    _, codes = revived.transform_records([{"income": 10, "grade": 3}, {"income": 10, "grade": 2}])
    assert codes[:, 0].tolist() == [1, 3]


@pytest.mark.parametrize(
    ("value", "name"),
    [
        (3, "3"),
        (3.0, "3"),
        ("3", "3"),
        (2.5, "2.5"),
        (True, "true"),
        ("x", "x"),
        (None, None),
        (float("nan"), None),
        (np.int64(4), "4"),
        (np.float32(4.0), "4"),
    ],
)
def test_category_names(value: object, name: str | None) -> None:
    assert category_name(value) == name


def test_a_column_is_named_as_its_values_are() -> None:
    frame = pd.DataFrame({"f": [1.0, 2.0, None], "m": [1.5, 2.0, None], "o": [3, "a", None]})
    assert category_names(frame["f"]).tolist() == ["1", "2", pd.NA]
    assert category_names(frame["m"]).tolist() == ["1.5", "2", pd.NA]
    assert category_names(frame["o"]).tolist() == ["3", "a", pd.NA]
