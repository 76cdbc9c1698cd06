"""Profiling a sample for `pipelines init`: bounded reads, and the role each column gets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from registry.errors import ConfigError, DataSourceError
from tasks.data.profiling import profile_frame, starter_suite
from tasks.data.sampling import load_sample
from tasks.data.simulator import simulate


def test_a_sample_reads_only_the_first_rows_of_files_and_folders(tmp_path: Path) -> None:
    folder = tmp_path / "parquet"
    folder.mkdir()
    simulate(3000, seed=1).to_parquet(folder / "a.parquet", index=False)
    simulate(3000, seed=2).to_parquet(folder / "b.parquet", index=False)
    both = load_sample(folder, rows=4000)
    assert len(both) == 4000 and str(both["event_time"].dtype).endswith("UTC]")
    simulate(500, seed=3).to_csv(tmp_path / "week.csv", index=False)
    head = load_sample(tmp_path / "week.csv", rows=50)
    whole = pd.read_csv(tmp_path / "week.csv")
    assert len(head) == 50 and list(head["age"]) == list(whole["age"][:50])
    assert str(head["event_time"].dtype).endswith("UTC]")  # parsed as a run parses it
    with pytest.raises(DataSourceError, match="does not exist"):
        load_sample(tmp_path / "missing.csv")


def test_each_column_gets_a_role_and_a_reason() -> None:
    rng = np.random.default_rng(0)
    rows = 500
    frame = pd.DataFrame(
        {
            "order_id": [f"o-{i}" for i in range(rows)],
            "row": np.arange(rows),
            "income": rng.integers(10_000, 90_000, rows),
            "gift": rng.random(rows) < 0.3,
            "signed_up": pd.Timestamp("2026-01-01") + pd.to_timedelta(np.arange(rows), "h"),
            "country": "fr",
            "basket": rng.choice([1.0, 2.0, 3.0, np.nan], rows),
            "weight": np.where(rng.random(rows) < 0.1, np.nan, rng.random(rows)),
            "returned": rng.integers(0, 2, rows),
        }
    )
    profile = profile_frame(frame, "returned")
    roles = {c.name: c.role for c in profile.columns}
    assert roles == {
        "order_id": "skipped",  # text unique per row
        "row": "skipped",  # a sequence
        "income": "numeric",  # unique per row too, but spread out: a measure
        "gift": "categorical",
        "signed_up": "skipped",
        "country": "skipped",  # constant
        "basket": "categorical",  # whole numbers read as floats: a code
        "weight": "skipped",  # numbers with gaps: the model takes none
        "returned": "target",
    }
    assert profile.task == "binary"
    basket = next(c for c in profile.columns if c.name == "basket")
    assert basket.values == (1, 2, 3)  # 3.0 is the code 3
    suite = starter_suite(profile, "returns")
    columns = suite["expectations"][1]["kwargs"]["column_set"]
    assert columns == ["income", "gift", "basket", "returned"]
    with pytest.raises(ConfigError, match="must hold only 0 and 1 for --task binary"):
        profile_frame(frame.assign(returned=frame["returned"] * 2), "returned", task="binary")
    with pytest.raises(ConfigError, match="recode them as 0 and 1"):
        profile_frame(frame.assign(returned=frame["returned"] + 1), "returned")
    with pytest.raises(ConfigError, match="is not a column of the data"):
        profile_frame(frame, "refunded")
