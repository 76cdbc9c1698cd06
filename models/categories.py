"""Category names: one spelling per category, whatever type carried it.

A CSV column of small integers with one empty cell is read as floats, so training saw
``3.0`` while a client sends the JSON integer ``3``; compared as raw strings they would be two
categories and the client's value would fall in the unknown bucket. Every categorical value is
named here, at training and at prediction time alike:

- an integer, or a float with an integral value, is its integer (``3``, ``3.0`` → ``"3"``);
- any other float is its shortest round-trip form (``2.5`` → ``"2.5"``);
- a boolean is ``"true"``/``"false"`` (JSON's spelling);
- a string is itself; a missing value (None, NaN, NA) has no name.

Vocabularies of bundles stored before this rule are read through it too (``"3.0"`` names
category ``"3"``), so their lookups keep working.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "category_codes",
    "category_kind",
    "category_name",
    "category_names",
    "stored_category",
]

_INTEGRAL_TEXT = re.compile(r"-?\d+\.0+")
_OLD_BOOLEANS = {"True": "true", "False": "false"}


def category_name(value: Any) -> str | None:
    """The canonical name of one categorical value (None for a missing one)."""
    if value is None or value is pd.NA:
        return None
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        number = float(value)
        if math.isnan(number):
            return None
        if number.is_integer():
            return str(int(number))
        return repr(number)
    return str(value)


def category_names(series: pd.Series) -> pd.Series:
    """``category_name`` of every value, as a pandas string column (missing stays NA);
    vectorised for the numeric columns that make up most large frames."""
    if pd.api.types.is_bool_dtype(series) and not series.isna().any():
        return series.map({True: "true", False: "false"}).astype("string")
    if pd.api.types.is_integer_dtype(series):
        return series.astype("Int64").astype("string")
    if pd.api.types.is_float_dtype(series):
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
        finite = values[~np.isnan(values)]
        if np.all(np.mod(finite, 1.0) == 0.0) and np.all(np.abs(finite) < 2**53):
            return series.astype("Int64").astype("string")
    if isinstance(series.dtype, pd.CategoricalDtype) or (
        pd.api.types.infer_dtype(series, skipna=True) == "string"
    ):
        # Each distinct value named once, then spread by code: a million rows of a few
        # dozen strings cost one hash pass, not a million Python calls. (Only for plain
        # strings and categoricals: factorize would fold True into 1 in a mixed column.)
        codes, uniques = pd.factorize(series, use_na_sentinel=True)
        names = pd.array([category_name(v) for v in uniques], dtype="string")
        return pd.Series(names.take(codes, allow_fill=True), index=series.index, dtype="string")
    return series.map(category_name, na_action="ignore").astype("string")


def category_codes(series: pd.Series, vocabulary: pd.Index) -> np.ndarray:
    """Codes of ``series`` in ``vocabulary``: 1..len for a known name, 0 for anything else
    (unknown or missing). Distinct values are named and looked up once, then spread by code."""
    if series.dtype == object and pd.api.types.infer_dtype(series, skipna=True) != "string":
        # Mixed Python objects: factorize would fold True into 1, so name each value.
        return np.asarray(vocabulary.get_indexer(category_names(series).fillna("")) + 1)
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    names = category_names(pd.Series(uniques)).fillna("")
    # One slot more, for the missing values' code -1.
    lookup = np.append(vocabulary.get_indexer(names) + 1, 0).astype(np.int64)
    return np.asarray(lookup[codes])


def stored_category(text: str) -> str:
    """A vocabulary entry as stored in a bundle, under today's rule (``"3.0"`` → ``"3"``,
    ``"True"`` → ``"true"``)."""
    if _INTEGRAL_TEXT.fullmatch(text):
        return str(int(float(text)))
    return _OLD_BOOLEANS.get(text, text)


def category_kind(series: pd.Series) -> str:
    """What a categorical column held at training: ``integer``, ``number``, ``boolean`` or
    ``string`` (recorded in the bundle, so a reader knows what clients should send)."""
    present = series.dropna()
    if pd.api.types.is_bool_dtype(series):
        return "boolean"
    if pd.api.types.is_integer_dtype(series):
        return "integer"
    if pd.api.types.is_float_dtype(series):
        values = present.to_numpy(dtype=np.float64)
        return "integer" if np.all(np.mod(values, 1.0) == 0.0) else "number"
    return "string"
