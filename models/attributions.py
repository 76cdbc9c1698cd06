"""Why a model decided: per-row integrated gradients and global permutation importance.

**Integrated gradients** (``integrated_gradients``) work on the network's input space: numeric
features as the preprocessor scales them, categorical features as their embedding vectors.
The baseline is every background row in turn (expected-gradients style): for each instance and
each background row the input is interpolated from the background row to the instance at
``steps`` midpoints, the gradients there are averaged and multiplied by the input difference,
and the result is averaged over the background rows. A categorical feature's attribution is
the sum over its embedding dimensions. Attributions are in the network's raw output units:
logits for a binary model, standardised target units (the target divided by its training
standard deviation) for regression. They are complete: each row's attributions add up to
``f(x) - mean(f(background))`` in those units, up to the midpoint rule's error.

All instances, background rows and steps go through one batched forward and backward pass
(chunked only to bound memory), on the CPU, without touching the bundle's network.

**Permutation importance** (``permutation_importance``) measures how much a metric worsens
when one feature's column is shuffled: every feature times every repeat is stacked into one
frame and predicted in as few calls as the memory bound allows. For a bundle,
``bundle_permutation_importance`` gives the same numbers from the transformed input arrays,
skipping the per-copy preprocessing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, cast

import numpy as np
import pandas as pd
import torch
from torch import nn

from models.metrics import metric_spec

if TYPE_CHECKING:
    from models.bundle import ModelBundle
    from models.modules import TabularMLP

__all__ = [
    "bundle_permutation_importance",
    "feature_names",
    "integrated_gradients",
    "integrated_gradients_arrays",
    "permutation_importance",
]

# Interpolated points per forward/backward chunk: bounds memory at a few hundred MB for the
# widest nets the server accepts, and is one chunk for any single request.
_MAX_POINTS = 65_536
# Stacked rows per predict call in permutation importance.
_MAX_STACKED_ROWS = 262_144


def feature_names(bundle: ModelBundle) -> list[str]:
    """The bundle's features in attribution order: numeric, then categorical."""
    return list(bundle.preprocessor.feature_names)


def integrated_gradients(
    bundle: ModelBundle,
    frame: pd.DataFrame,
    background: pd.DataFrame,
    *,
    steps: int = 16,
) -> np.ndarray:
    """Attributions float64 [len(frame), n_features] in ``feature_names(bundle)`` order.

    Units: logits (binary) or standardised target units (regression); each row sums to about
    ``f(row) - mean(f(background))``. Raises InvalidInstanceError for a malformed frame and
    ValueError for an empty background or ``steps < 1``.
    """
    numeric, categorical = bundle.preprocessor.transform(frame)
    bg_numeric, bg_categorical = bundle.preprocessor.transform(background)
    return integrated_gradients_arrays(
        bundle.net, numeric, categorical, bg_numeric, bg_categorical, steps=steps
    )


def integrated_gradients_arrays(
    net: TabularMLP,
    numeric: np.ndarray,
    categorical: np.ndarray,
    bg_numeric: np.ndarray,
    bg_categorical: np.ndarray,
    *,
    steps: int = 16,
) -> np.ndarray:
    """``integrated_gradients`` on already transformed inputs (``Preprocessor.transform`` or
    ``transform_records`` output), for callers that hold those already."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if len(bg_numeric) == 0:
        raise ValueError("the background needs at least one row")
    n_numeric = numeric.shape[1]
    dims = [cast(nn.Embedding, emb).embedding_dim for emb in net.embeddings]
    n_features = n_numeric + len(dims)
    if len(numeric) == 0:
        return np.zeros((0, n_features), dtype=np.float64)
    # Inference mode off: a caller inside torch.inference_mode() still gets gradients here.
    with torch.inference_mode(False):
        with torch.no_grad():
            x = _inputs(net, numeric, categorical)
            b = _inputs(net, bg_numeric, bg_categorical)
        full = _expected_gradients(net, x, b, steps).numpy()
    n = len(full)
    attributions = np.empty((n, n_features), dtype=np.float64)
    attributions[:, :n_numeric] = full[:, :n_numeric]
    offset = n_numeric
    for j, dim in enumerate(dims):
        attributions[:, n_numeric + j] = full[:, offset : offset + dim].sum(axis=1)
        offset += dim
    return attributions


def _expected_gradients(
    net: TabularMLP, x: torch.Tensor, b: torch.Tensor, steps: int
) -> torch.Tensor:
    """IG of the MLP at inputs ``x`` [n, D] averaged over baselines ``b`` [B, D]: float64
    [n, D]. Every instance x baseline x step point goes through one forward and backward
    pass, in chunks of at most ``_MAX_POINTS`` points."""
    n, width = x.shape
    n_bg = b.shape[0]
    alphas = (torch.arange(steps, dtype=torch.float32) + 0.5) / steps  # midpoint rule
    chunk = max(1, _MAX_POINTS // (n_bg * steps))
    out = torch.empty((n, width), dtype=torch.float64)
    for start in range(0, n, chunk):
        xs = x[start : start + chunk]
        delta = xs[:, None, :] - b[None, :, :]  # [c, B, D]
        points = b[None, None, :, :] + alphas[None, :, None, None] * delta[:, None, :, :]
        points = points.reshape(-1, width).requires_grad_(True)  # [c * S * B, D]
        with torch.enable_grad():
            value = net.mlp(points).sum()
            (grads,) = torch.autograd.grad(value, points)
        mean_grad = grads.reshape(len(xs), steps, n_bg, width).mean(dim=1)  # [c, B, D]
        out[start : start + len(xs)] = (mean_grad * delta).mean(dim=1).double()
    return out


def _inputs(net: TabularMLP, numeric: np.ndarray, categorical: np.ndarray) -> torch.Tensor:
    """The MLP's input: scaled numerics then each categorical's embedding vector."""
    parts = [torch.as_tensor(numeric, dtype=torch.float32)]
    codes = torch.as_tensor(categorical, dtype=torch.int64)
    parts += [emb(codes[:, j]).float() for j, emb in enumerate(net.embeddings)]
    return torch.cat(parts, dim=1)


def permutation_importance(
    predict: Callable[[pd.DataFrame], np.ndarray],
    frame: pd.DataFrame,
    y: np.ndarray,
    metric: str,
    *,
    repeats: int = 3,
    seed: int = 0,
    features: Sequence[str] | None = None,
    max_rows: int = _MAX_STACKED_ROWS,
) -> dict[str, tuple[float, float]]:
    """Feature -> (mean, std) over ``repeats`` of the metric's drop when that feature's
    column is shuffled; positive means the feature matters (the sign follows the metric, so a
    loss that grows counts as a drop). ``features`` defaults to every column of ``frame``.

    Every (feature, repeat) copy of ``frame`` is stacked and predicted together, in chunks
    of at most ``max_rows`` rows. A metric undefined on the rows (AUC on one class) gives NaN.
    """
    spec = metric_spec(metric)
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    names = list(frame.columns) if features is None else list(features)
    missing = [f for f in names if f not in frame.columns]
    if missing:
        raise ValueError(f"frame lacks feature column(s): {', '.join(missing)}")
    y = np.asarray(y, dtype=np.float64)
    n = len(frame)
    if n == 0 or not names:
        return {f: (float("nan"), float("nan")) for f in names}
    if len(y) != n:
        raise ValueError(f"y has {len(y)} values for {n} rows")
    frame = frame.reset_index(drop=True)
    base = spec.fn(y, np.asarray(predict(frame), dtype=np.float64))
    jobs = _jobs(names, repeats, n, seed)

    def predict_stacked(part: Sequence[tuple[str, np.ndarray]]) -> np.ndarray:
        return np.asarray(predict(_stacked(frame, part)), dtype=np.float64)

    return _importance(names, repeats, jobs, predict_stacked, y, base, metric, max_rows)


def bundle_permutation_importance(
    bundle: ModelBundle,
    frame: pd.DataFrame,
    y: np.ndarray,
    metric: str,
    *,
    repeats: int = 3,
    seed: int = 0,
    max_rows: int = _MAX_STACKED_ROWS,
) -> dict[str, tuple[float, float]]:
    """``permutation_importance(bundle.predict, frame[feature_names(bundle)], ...)`` with the
    same answer, faster: ``frame`` is transformed once and the shuffles permute the network's
    input columns (the preprocessing treats each column on its own, so this is the same)."""
    from models.bundle import predict_arrays

    metric_spec(metric)
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    names = feature_names(bundle)
    y = np.asarray(y, dtype=np.float64)
    n = len(frame)
    if n == 0:
        return {f: (float("nan"), float("nan")) for f in names}
    if len(y) != n:
        raise ValueError(f"y has {len(y)} values for {n} rows")
    pre = bundle.preprocessor
    numeric, categorical = pre.transform(frame)
    column = {f: (numeric, j) for j, f in enumerate(pre.numeric)}
    column.update({f: (categorical, j) for j, f in enumerate(pre.categorical)})

    def predict(num: np.ndarray, cat: np.ndarray) -> np.ndarray:
        return predict_arrays(bundle.net, bundle.task, pre, num, cat)

    base = metric_spec(metric).fn(y, predict(numeric, categorical))
    jobs = _jobs(names, repeats, n, seed)

    def predict_stacked(part: Sequence[tuple[str, np.ndarray]]) -> np.ndarray:
        num, cat = np.tile(numeric, (len(part), 1)), np.tile(categorical, (len(part), 1))
        for k, (name, perm) in enumerate(part):
            source, j = column[name]
            target = num if source is numeric else cat
            target[k * n : (k + 1) * n, j] = source[perm, j]
        return predict(num, cat)

    return _importance(names, repeats, jobs, predict_stacked, y, base, metric, max_rows)


def _jobs(names: Sequence[str], repeats: int, n: int, seed: int) -> list[tuple[str, np.ndarray]]:
    """One (feature, row order) per feature and repeat, drawn in a fixed order."""
    rng = np.random.default_rng(seed)
    return [(f, rng.permutation(n)) for f in names for _ in range(repeats)]


def _importance(
    names: Sequence[str],
    repeats: int,
    jobs: Sequence[tuple[str, np.ndarray]],
    predict_stacked: Callable[[Sequence[tuple[str, np.ndarray]]], np.ndarray],
    y: np.ndarray,
    base: float,
    metric: str,
    max_rows: int,
) -> dict[str, tuple[float, float]]:
    """The metric's sign-adjusted drop per job, predicted in stacks of at most ``max_rows``
    rows, as (mean, std) per feature."""
    spec = metric_spec(metric)
    n = len(y)
    per_call = max(1, max_rows // n)
    drops = np.empty(len(jobs), dtype=np.float64)
    for start in range(0, len(jobs), per_call):
        part = jobs[start : start + per_call]
        predictions = predict_stacked(part)
        for k in range(len(part)):
            score = spec.fn(y, predictions[k * n : (k + 1) * n])
            drops[start + k] = spec.sign * (base - score)
    table = drops.reshape(len(names), repeats)
    return {f: (float(table[i].mean()), float(table[i].std())) for i, f in enumerate(names)}


def _stacked(frame: pd.DataFrame, jobs: Sequence[tuple[str, np.ndarray]]) -> pd.DataFrame:
    """``len(jobs)`` copies of ``frame`` one under another, copy k with column ``jobs[k][0]``
    reordered by ``jobs[k][1]``; every column keeps its dtype."""
    n = len(frame)
    tiled = np.tile(np.arange(n), len(jobs))
    rows: dict[str, np.ndarray] = {}
    for k, (name, perm) in enumerate(jobs):
        index = rows.setdefault(name, tiled.copy())
        index[k * n : (k + 1) * n] = perm
    columns = {c: frame[c].take(rows.get(c, tiled)).reset_index(drop=True) for c in frame.columns}
    return pd.DataFrame(columns)
