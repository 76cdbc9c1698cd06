"""Plain ``nn.Module`` parts of the tabular model; every setting comes through the constructor."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from models.architecture import Architecture
from registry.errors import TrainingError

__all__ = ["TabularMLP", "embedding_dims_for"]

_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU}


def embedding_dims_for(
    cardinalities: Sequence[int], *, fixed: int | None, maximum: int
) -> tuple[int, ...]:
    """Embedding widths: ``fixed`` if given, else a common rule of thumb capped at ``maximum``."""
    if fixed is not None:
        return tuple(fixed for _ in cardinalities)
    return tuple(max(1, min(maximum, round(1.6 * c**0.56))) for c in cardinalities)


class TabularMLP(nn.Module):
    """Embeddings for categorical codes, concatenated with numerics, then an MLP to one output."""

    def __init__(
        self,
        n_numeric: int,
        cardinalities: Sequence[int],
        embedding_dims: Sequence[int],
        hidden_sizes: Sequence[int],
        dropout: float = 0.0,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        # Exactly the constructor's arguments: the bundle manifest rebuilds the net from these.
        self.architecture: dict[str, object] = {
            "class": "TabularMLP",
            "n_numeric": n_numeric,
            "cardinalities": list(cardinalities),
            "embedding_dims": list(embedding_dims),
            "hidden_sizes": list(hidden_sizes),
            "dropout": dropout,
            "activation": activation,
        }
        # Counted before any allocation: the server refuses bundles over these limits, so
        # training must not build (and spend hours on) a network it could never serve.
        problem = Architecture(
            n_numeric, tuple(cardinalities), tuple(embedding_dims), tuple(hidden_sizes)
        ).problem()
        if problem is not None:
            raise TrainingError(
                f"cannot build the model: {problem}; lower model.hidden_sizes, "
                "model.embedding_dim or model.max_categories, or use fewer features"
            )
        self.embeddings = nn.ModuleList(
            nn.Embedding(c, d) for c, d in zip(cardinalities, embedding_dims, strict=True)
        )
        layers: list[nn.Module] = []
        width = n_numeric + sum(embedding_dims)
        for hidden in hidden_sizes:
            layers += [nn.Linear(width, hidden), _ACTIVATIONS[activation](), nn.Dropout(dropout)]
            width = hidden
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        """Raw scores [n]: logits for binary tasks, standardised values for regression."""
        parts = [numeric]
        parts += [emb(categorical[:, j]) for j, emb in enumerate(self.embeddings)]
        out: torch.Tensor = self.mlp(torch.cat(parts, dim=1))
        return out.squeeze(1)
