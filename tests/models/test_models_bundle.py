"""The model bundle: round trips exactly, refuses tampering, and names bad instance fields."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from models.bundle import EncodedBundle, encode_bundle, load_bundle, save_bundle
from models.modules import TabularMLP, embedding_dims_for
from models.preprocessing import Preprocessor
from registry.errors import BundleError, InvalidInstanceError

NUMERIC = ("income", "age")
CATEGORICAL = ("region",)


def _frame(n: int = 64, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "income": rng.normal(50_000, 10_000, n),
            "age": rng.integers(18, 80, n),
            "region": rng.choice(["north", "south", "east"], n),
        }
    )


def _encoded(seed: int = 0) -> EncodedBundle:
    torch.manual_seed(seed)
    pre = Preprocessor.fit(_frame(), NUMERIC, CATEGORICAL, max_categories=10)
    net = TabularMLP(
        len(NUMERIC),
        pre.cardinalities,
        embedding_dims_for(pre.cardinalities, fixed=None, maximum=4),
        (8,),
        0.0,
    )
    return encode_bundle(
        net,
        architecture=net.architecture,
        preprocessor=pre,
        task="binary",
        target="default",
        metrics={"val_roc_auc": 0.8},
        lineage={"dataset_digest": "sha256:" + "0" * 64, "seed": seed},
    )


class DictStore:
    """An in-memory content-addressed store with the registry's put/get calling style."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}

    def put_bytes(self, data: bytes, *, media_type: str = "") -> str:
        import hashlib

        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self.blobs[digest] = data
        return digest

    def get_bytes(self, digest: str) -> bytes:
        return self.blobs[digest]


def test_round_trip_gives_identical_predictions() -> None:
    store, encoded = DictStore(), _encoded()
    digest = save_bundle(store.put_bytes, encoded)
    assert digest == encoded.digest
    bundle = load_bundle(store.get_bytes, digest)
    frame = _frame(20, seed=5)
    from_frame = bundle.predict(frame)
    from_dicts = bundle.predict(frame.to_dict(orient="records"))
    again = load_bundle(store.get_bytes, digest).predict(frame)
    assert np.array_equal(from_frame, from_dicts)
    assert np.array_equal(from_frame, again)
    assert ((from_frame > 0) & (from_frame < 1)).all()
    assert bundle.feature_names == (*NUMERIC, *CATEGORICAL)
    assert bundle.manifest["lineage"]["seed"] == 0


def test_same_inputs_give_byte_identical_bundle() -> None:
    assert _encoded(seed=3).digest == _encoded(seed=3).digest
    assert _encoded(seed=3).digest != _encoded(seed=4).digest


def test_manifest_is_plain_sorted_json_naming_the_weights() -> None:
    encoded = _encoded()
    manifest = json.loads(encoded.manifest)
    assert manifest["weights"]["digest"] == encoded.weights_digest
    assert encoded.manifest.decode().strip() == json.dumps(
        manifest, sort_keys=True, separators=(",", ":")
    )
    assert set(manifest) >= {"architecture", "preprocessing", "features", "metrics", "lineage"}


def test_tampered_weights_are_refused() -> None:
    store, encoded = DictStore(), _encoded()
    save_bundle(store.put_bytes, encoded)
    weights = bytearray(store.blobs[encoded.weights_digest])
    weights[-1] ^= 0x01
    store.blobs[encoded.weights_digest] = bytes(weights)
    with pytest.raises(BundleError, match="tampered"):
        load_bundle(store.get_bytes, encoded.digest)


def test_tampered_manifest_is_refused() -> None:
    store, encoded = DictStore(), _encoded()
    save_bundle(store.put_bytes, encoded)
    store.blobs[encoded.digest] = encoded.manifest.replace(b'"binary"', b'"regression"')
    with pytest.raises(BundleError, match="tampered"):
        load_bundle(store.get_bytes, encoded.digest)


def test_manifest_pointing_at_other_weights_is_refused() -> None:
    store, encoded = DictStore(), _encoded()
    save_bundle(store.put_bytes, encoded)
    manifest = json.loads(encoded.manifest)
    manifest["architecture"]["hidden_sizes"] = [16]  # weights no longer fit the architecture
    forged = store.put_bytes(json.dumps(manifest, sort_keys=True).encode())
    with pytest.raises(BundleError, match="do not fit"):
        load_bundle(store.get_bytes, forged)


def test_a_blob_that_is_not_a_bundle_is_refused() -> None:
    store = DictStore()
    digest = store.put_bytes(b"\x80\x04pickle? no thanks")
    with pytest.raises(BundleError, match="unreadable manifest"):
        load_bundle(store.get_bytes, digest)


def test_invalid_instances_name_the_field() -> None:
    store, encoded = DictStore(), _encoded()
    bundle = load_bundle(store.get_bytes, save_bundle(store.put_bytes, encoded))
    good = {"income": 40_000.0, "age": 30, "region": "north"}
    with pytest.raises(InvalidInstanceError, match="'age'") as missing:
        bundle.predict([{"income": 1.0, "region": "north"}])
    assert missing.value.field == "age"
    with pytest.raises(InvalidInstanceError, match="'income'") as wrong_type:
        bundle.predict([good, {**good, "income": "lots"}])
    assert wrong_type.value.field == "income"
    with pytest.raises(InvalidInstanceError, match="'age'"):
        bundle.predict([{**good, "age": None}])


def test_unseen_category_falls_into_the_unknown_bucket() -> None:
    store, encoded = DictStore(), _encoded()
    bundle = load_bundle(store.get_bytes, save_bundle(store.put_bytes, encoded))
    base = {"income": 40_000.0, "age": 30}
    unseen = bundle.predict([{**base, "region": "atlantis"}, {**base, "region": None}])
    assert np.isfinite(unseen).all()
    assert unseen[0] == unseen[1]
