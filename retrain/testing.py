"""Test and demo support shipped with the server: small real bundles registered in seconds.

The bundles are genuine (safetensors + manifest, loaded through ``models.bundle``), built from
an untrained network with a fixed seed, so no training run is needed. The same ``seed`` gives
the same weights: a "healthy retrain" whose predictions match the champion's.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from models.preprocessing import Preprocessor
    from registry.store import Registry

__all__ = ["register_test_bundle", "sample_preprocessor"]


@lru_cache(maxsize=1)
def sample_preprocessor() -> Preprocessor:
    """Preprocessing statistics of 2,000 simulated loan applications (computed once)."""
    from models.preprocessing import Preprocessor
    from tasks.data.simulator import FEATURES_CATEGORICAL, FEATURES_NUMERIC, simulate

    frame = simulate(2000, seed=1)
    return Preprocessor.fit(frame, FEATURES_NUMERIC, FEATURES_CATEGORICAL, max_categories=20)


def register_test_bundle(
    registry: Registry,
    model: str = "loans",
    *,
    seed: int = 0,
    tag: str = "",
    champion: bool = False,
) -> int:
    """Store a small real bundle, register it as the next version of ``model``; its number.

    ``champion=True`` also points the champion alias at it (compare-and-swap on the current).
    """
    import torch

    from models.bundle import encode_bundle, save_bundle
    from models.modules import TabularMLP

    pre = sample_preprocessor()
    torch.manual_seed(seed)
    net = TabularMLP(len(pre.numeric), pre.cardinalities, [4] * len(pre.categorical), [16])
    encoded = encode_bundle(
        net,
        architecture=net.architecture,
        preprocessor=pre,
        task="binary",
        target="default",
        metrics={},
        lineage={"seed": seed, "tag": tag},
    )
    digest = save_bundle(registry.put_bytes, encoded)
    version = registry.catalog.register_model_version(
        model, digest, metrics={}, lineage={"seed": seed, "tag": tag}, reason="test bundle"
    ).version
    if champion:
        current = registry.catalog.get_alias(model, "champion")
        registry.catalog.set_alias(
            model, "champion", version, expected=current, reason="test bundle", actor="test"
        )
    return version
