"""Model and training settings: what a pipeline spec's ``model:`` and ``training:`` hold."""

from __future__ import annotations

from itertools import pairwise
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from models.architecture import LIMITS, MAX_CATEGORIES

__all__ = ["Activation", "ModelConfig", "Precision", "TrainingConfig", "resolve_precision"]

Activation = Literal["relu", "gelu", "silu"]
Precision = Literal["auto", "32-true", "bf16-mixed", "16-mixed"]


Width = Annotated[int, Field(ge=1, le=LIMITS.max_width)]


class ModelConfig(BaseModel):
    """Architecture of the tabular MLP: embeddings for categoricals, then dense layers.

    Bounded by the limits the model server loads bundles under (``models.architecture``), as
    far as the spec alone decides; the features the data brings are counted when the network
    is built, before training starts.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    hidden_sizes: tuple[Width, ...] = Field(
        default=(64, 32),
        min_length=1,
        max_length=LIMITS.max_hidden_layers,
        description=f"Width of each hidden layer (1..{LIMITS.max_width} units).",
    )
    embedding_dim: int | None = Field(
        default=None,
        ge=1,
        le=LIMITS.max_embedding_dim,
        description="Fixed embedding width; None sizes it per feature.",
    )
    max_embedding_dim: int = Field(default=16, ge=1, le=LIMITS.max_embedding_dim)
    max_categories: int = Field(
        default=256,
        ge=1,
        le=MAX_CATEGORIES,
        description="Vocabulary cap per categorical; rarer values are unknown.",
    )
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0)
    activation: Activation = "relu"

    @model_validator(mode="after")
    def _fits_the_server(self) -> Self:
        # Parameters the spec alone fixes: between hidden layers, and one categorical's
        # largest possible embedding table. Features add more when the net is built.
        sizes = self.hidden_sizes
        dense = sum(a * b + b for a, b in pairwise(sizes)) + sizes[-1] + 1
        table = (self.max_categories + 1) * (self.embedding_dim or self.max_embedding_dim)
        for count, what, fix in (
            (dense, "hidden_sizes need", "use fewer or narrower layers"),
            (table, "one categorical's embedding can need", "lower max_categories or its width"),
        ):
            if count > LIMITS.max_parameters:
                raise ValueError(
                    f"{what} {count:,} parameters; the model server loads at most "
                    f"{LIMITS.max_parameters:,}: {fix}"
                )
        return self


class TrainingConfig(BaseModel):
    """How a model is fitted. Same data, settings and seed on CPU give the same bundle."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_epochs: int = Field(default=20, ge=1)
    batch_size: int = Field(default=1024, ge=1)
    learning_rate: float = Field(default=3e-3, gt=0.0)
    weight_decay: float = Field(default=1e-4, ge=0.0)
    patience: int = Field(default=3, ge=1, description="Epochs without val_loss improvement.")
    val_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)
    seed: int = Field(default=0, ge=0)
    precision: Precision = Field(
        default="auto", description="auto: bf16-mixed on GPUs that support it, else 32-true."
    )
    accelerator: str = Field(default="auto", description="Lightning accelerator (auto/cpu/gpu).")
    devices: int | str = Field(default="auto", description="Lightning devices; several => DDP.")
    strategy: str = Field(
        default="auto", description="Lightning strategy; auto picks DDP for several devices."
    )
    cpu_threads: int | None = Field(
        default=1,
        ge=1,
        description=(
            "Torch threads while training on CPU. One is fastest for small tabular models on a "
            "busy machine and gives the same bundle on any core count; None keeps torch's default."
        ),
    )


def resolve_precision(precision: str, accelerator: str) -> str:
    """``auto``: bf16-mixed where the GPU supports it, else full float32."""
    if precision != "auto":
        return precision
    import torch

    gpu = accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    return "bf16-mixed" if gpu and torch.cuda.is_bf16_supported() else "32-true"
