"""Streaming a Parquet file: the per-row split, the seeded row-group order, the preprocessor
fitted in one pass, and the batches (plain and through the prefetcher)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from models.preprocessing import Preprocessor
from models.stream_data import (
    CudaPrefetcher,
    TrainStream,
    ValStream,
    group_order,
    validation_mask,
)
from models.stream_stats import fit_streaming
from registry.errors import TrainingError

NUMERIC = ["x", "big", "count"]
CATEGORICAL = ["colour", "size", "flag"]


def _frame(rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    colours = np.array(["red", "blue", "green", "teal", "plum"])
    return pd.DataFrame(
        {
            "x": rng.normal(3.0, 2.0, rows),
            # a large mean over a small spread: naive sums of squares lose the std here
            "big": 1e9 + rng.normal(0.0, 0.5, rows),
            "count": rng.integers(0, 40, rows),
            # ties between categories (equal counts) must rank as Preprocessor.fit ranks them
            "colour": colours[np.arange(rows) % 5],
            "size": pd.array(rng.integers(1, 9, rows), dtype="Int64"),
            "flag": rng.random(rows) < 0.3,
            "y": rng.normal(10.0, 3.0, rows),
        }
    ).astype({"size": "Int64"})


def _write(frame: pd.DataFrame, path: Path, group_rows: int) -> Path:
    pq.write_table(
        pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=group_rows
    )
    return path


def test_the_split_is_per_row_stable_and_near_the_fraction() -> None:
    whole = validation_mask(0, 100_000, seed=7, val_fraction=0.2)
    # Decided row by row: any chunking of the rows gives the same split.
    pieces = np.concatenate([validation_mask(s, 1000, 7, 0.2) for s in range(0, 100_000, 1000)])
    assert np.array_equal(whole, pieces)
    assert abs(whole.mean() - 0.2) < 0.01
    assert not np.array_equal(whole, validation_mask(0, 100_000, seed=8, val_fraction=0.2))


def test_row_group_order_differs_by_epoch_and_repeats_for_the_seed() -> None:
    first, second = group_order(50, seed=3, epoch=0), group_order(50, seed=3, epoch=1)
    assert sorted(first) == list(range(50))
    assert not np.array_equal(first, second)
    assert np.array_equal(first, group_order(50, seed=3, epoch=0))
    assert not np.array_equal(first, group_order(50, seed=4, epoch=0))


def test_streamed_preprocessor_equals_fit_on_the_same_training_rows(tmp_path: Path) -> None:
    frame = _frame(23_456)
    path = _write(frame, tmp_path / "d.parquet", group_rows=3000)
    pre, split = fit_streaming(
        path, NUMERIC, CATEGORICAL, target="y", task="regression", max_categories=4,
        seed=5, val_fraction=0.25,
    )  # fmt: skip
    train = ~validation_mask(0, len(frame), 5, 0.25)
    ref = Preprocessor.fit(
        frame[train], NUMERIC, CATEGORICAL, max_categories=4, target=frame["y"].to_numpy()[train]
    )
    assert pre.vocabularies == ref.vocabularies
    assert pre.category_kinds == ref.category_kinds
    np.testing.assert_allclose(pre.means, ref.means, rtol=1e-9)
    np.testing.assert_allclose(pre.stds, ref.stds, rtol=1e-9)
    assert pre.target_mean == pytest.approx(ref.target_mean, rel=1e-9)
    assert pre.target_std == pytest.approx(ref.target_std, rel=1e-9)
    assert sum(split.train_rows) == int(train.sum())
    assert sum(split.val_rows) == len(frame) - int(train.sum())


def test_missing_values_and_columns_are_refused_with_one_line(tmp_path: Path) -> None:
    frame = _frame(500)
    frame.loc[250, "x"] = np.nan
    path = _write(frame, tmp_path / "d.parquet", group_rows=100)
    with pytest.raises(TrainingError, match="feature 'x' has missing or infinite values"):
        fit_streaming(path, NUMERIC, [], target="y", task="regression",
                      max_categories=8, seed=0, val_fraction=0.2)  # fmt: skip
    with pytest.raises(TrainingError, match=r"lacks feature column.*nope"):
        fit_streaming(path, ["nope"], [], target="y", task="regression",
                      max_categories=8, seed=0, val_fraction=0.2)  # fmt: skip


def _streams(
    tmp_path: Path, buffer_rows: int = 2500
) -> tuple[TrainStream, ValStream, dict[str, int]]:
    frame = _frame(10_000).assign(row=np.arange(10_000))
    path = _write(frame, tmp_path / "d.parquet", group_rows=1000)
    pre, split = fit_streaming(
        path, [*NUMERIC, "row"], CATEGORICAL, target="y", task="regression",
        max_categories=8, seed=1, val_fraction=0.2,
    )  # fmt: skip
    epoch = {"now": 0}
    train = TrainStream(split, pre, target="y", regression=True, batch_size=256, seed=1,
                        buffer_rows=buffer_rows, epoch=lambda: epoch["now"])  # fmt: skip
    val = ValStream(split, pre, target="y", regression=True, batch_size=300)
    return train, val, epoch


def _rows(batches: object, train: TrainStream) -> np.ndarray:
    column = train.pre.numeric.index("row")
    mean, std = train.pre.means[column], train.pre.stds[column]
    seen = [b[0][:, column].double().numpy() * std + mean for b in batches]  # type: ignore[attr-defined]
    rows: np.ndarray = np.rint(np.concatenate(seen)).astype(np.int64)
    return rows


def test_an_epoch_visits_every_training_row_once_in_a_seeded_order(tmp_path: Path) -> None:
    train, val, epoch = _streams(tmp_path)
    first = _rows(list(train), train)
    is_val = validation_mask(0, 10_000, 1, 0.2)
    assert sorted(first) == list(np.flatnonzero(~is_val))
    assert len(list(train)) == len(train)
    assert np.array_equal(first, _rows(list(train), train))  # same epoch, same order
    epoch["now"] = 1
    assert not np.array_equal(first, _rows(list(train), train))
    held_out = _rows(list(val), train)
    assert list(held_out) == list(np.flatnonzero(is_val))  # every epoch, the same rows
    assert len(list(val)) == len(val)
    # What validation metrics are scored on: those rows, in file order, in the target's units.
    truth = np.concatenate([y for _, _, y in val.arrays()])
    np.testing.assert_array_equal(truth, _frame(10_000)["y"].to_numpy()[is_val])


def test_the_prefetcher_yields_the_plain_batches_on_cpu(tmp_path: Path) -> None:
    train, _, _ = _streams(tmp_path)
    plain = list(train)
    fetched = list(CudaPrefetcher(train, torch.device("cpu")))
    assert len(fetched) == len(plain)
    for a, b in zip(plain, fetched, strict=True):
        assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_prefetcher_copies_the_same_batches_to_the_gpu(tmp_path: Path) -> None:
    train, _, _ = _streams(tmp_path)
    plain = list(train)
    fetched = list(CudaPrefetcher(train, torch.device("cuda")))
    assert len(fetched) == len(plain)
    for a, b in zip(plain, fetched, strict=True):
        assert all(y.is_cuda and torch.equal(x, y.cpu()) for x, y in zip(a, b, strict=True))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_streamed_epoch_trains_on_the_gpu(tmp_path: Path) -> None:
    import lightning as L

    from models.lightning_module import TabularModule
    from models.modules import TabularMLP
    from models.stream_data import StreamingDataModule

    train, _, _ = _streams(tmp_path)
    pre = train.pre
    net = TabularMLP(n_numeric=len(pre.numeric), cardinalities=pre.cardinalities,
                     embedding_dims=[4] * len(pre.categorical), hidden_sizes=(16,))  # fmt: skip
    data = StreamingDataModule(train.split, pre, target="y", regression=True, batch_size=512,
                               seed=1, buffer_rows=4000)  # fmt: skip
    trainer = L.Trainer(accelerator="gpu", devices=1, max_epochs=2, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False)  # fmt: skip
    trainer.fit(TabularModule(net, "regression"), datamodule=data)
    assert np.isfinite(float(trainer.callback_metrics["val_loss"]))
    assert trainer.strategy.root_device.type == "cuda"
