"""The model bundle: round trips exactly, refuses tampering and crafted sizes before building
anything, and names bad instance fields."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from safetensors.torch import save as save_safetensors

from models.architecture import Architecture
from models.bundle import EncodedBundle, encode_bundle, load_bundle, save_bundle
from models.config import ModelConfig
from models.modules import TabularMLP, embedding_dims_for
from models.preprocessing import Preprocessor
from registry.errors import BundleError, InvalidInstanceError, TrainingError

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


# -- hostile bundles: bounded before anything is built -------------------------------------------
def _forge(store: DictStore, edit: Callable[[dict[str, Any]], None]) -> str:
    """Store a real bundle, then a manifest changed by ``edit`` naming the same weights."""
    encoded = _encoded()
    save_bundle(store.put_bytes, encoded)
    manifest = json.loads(encoded.manifest)
    edit(manifest)
    return store.put_bytes(json.dumps(manifest, sort_keys=True).encode())


def _set(field: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(manifest: dict[str, Any]) -> None:
        manifest["architecture"][field] = value

    return edit


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("hidden_sizes", [20000, 20000], r"hidden_sizes\[0\] is 20000, outside 1\.\.4096"),
        ("hidden_sizes", [4096] * 4, r"50,\d{3},\d{3} parameters, over the limit of 16,777,216"),
        ("hidden_sizes", [8] * 17, "hidden_sizes has 17 layers, over the limit of 16"),
        ("hidden_sizes", [0], r"hidden_sizes\[0\] is 0"),
        ("hidden_sizes", [True], r"hidden_sizes\[0\] must be a whole number"),
        ("hidden_sizes", "64", "hidden_sizes must be a list"),
        ("cardinalities", [10**9], r"cardinalities\[0\] is 1000000000"),
        ("embedding_dims", [100_000], r"embedding_dims\[0\] is 100000"),
        ("embedding_dims", [4, 4], "one width per entry of cardinalities"),
        ("n_numeric", 10**6, "1000001 input features, over the limit of 4096"),
        ("n_numeric", 2.5, "n_numeric must be a whole number"),
        ("activation", "__import__", "activation must be one of"),
        ("dropout", float("nan"), "dropout must be in"),
        ("class", "Pickled", "class 'Pickled' is not TabularMLP"),
        ("init_script", "x", "architecture.init_script is unknown"),
    ],
)
def test_a_crafted_architecture_is_refused_before_any_network_is_built(
    monkeypatch: pytest.MonkeyPatch, field: str, value: Any, named: str
) -> None:
    store = DictStore()
    forged = _forge(store, _set(field, value))

    def never(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a network or its tensors were built for a refused bundle")

    monkeypatch.setattr("models.bundle.TabularMLP", never)
    monkeypatch.setattr("models.bundle.load_safetensors", never)
    with pytest.raises(BundleError, match=named) as refused:
        load_bundle(store.get_bytes, forged)
    assert "\n" not in str(refused.value)


def _weights(edit: Callable[[dict[str, torch.Tensor]], None]) -> bytes:
    net = TabularMLP(len(NUMERIC), (4,), (3,), (8,), 0.0)  # the shapes _encoded() has
    state = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
    edit(state)
    return save_safetensors(state)


@pytest.mark.parametrize(
    ("weights", "named"),
    [
        (_weights(lambda s: s.update(extra=torch.zeros(2))), "'extra' is not part of"),
        (_weights(lambda s: s.pop("mlp.3.bias")), "'mlp.3.bias' is missing"),
        (
            _weights(lambda s: s.update({"mlp.0.weight": torch.zeros(8, 5, dtype=torch.float64)})),
            r"'mlp.0.weight' is F64 \[8, 5\]; the architecture needs F32 \[8, 5\]",
        ),
        (_weights(lambda s: s.update({"mlp.0.weight": torch.zeros(16, 5)})), r"\[16, 5\]"),
        (
            _weights(lambda s: None) + b"\0" * 64,
            "data is 340 bytes; .* need 276",
        ),
        ((2**40).to_bytes(8, "little") + b"{}", "header claims 1,099,511,627,776 bytes"),
        (b"\x05\0\0\0\0\0\0\0[1,2]", "header is not a JSON object"),
        (b"\x01", "too short to be safetensors"),
    ],
)
def test_weights_that_disagree_with_the_architecture_are_refused(
    weights: bytes, named: str
) -> None:
    store = DictStore()
    weights_digest = store.put_bytes(weights)

    def point_at_weights(manifest: dict[str, Any]) -> None:
        manifest["weights"]["digest"] = weights_digest

    forged = _forge(store, point_at_weights)
    with pytest.raises(BundleError, match=f"weights do not fit its manifest: .*{named}"):
        load_bundle(store.get_bytes, forged)


def test_oversized_blobs_are_refused_unread() -> None:
    store, encoded = DictStore(), _encoded()
    save_bundle(store.put_bytes, encoded)
    fetched: list[str] = []

    def get_bytes(digest: str) -> bytes:
        fetched.append(digest)
        return store.get_bytes(digest)

    def claims_huge(size: int, digest: str) -> Callable[[str], int | None]:
        return lambda blob: size if blob == digest else None

    with pytest.raises(BundleError, match=r"manifest .* is 17,000,000 bytes, over the limit"):
        load_bundle(get_bytes, encoded.digest, size_of=claims_huge(17_000_000, encoded.digest))
    assert fetched == []
    with pytest.raises(BundleError, match=r"weights .* is 10,000,000 bytes, over the limit of"):
        load_bundle(
            get_bytes, encoded.digest, size_of=claims_huge(10_000_000, encoded.weights_digest)
        )
    assert fetched == [encoded.digest]  # the manifest only


def test_preprocessing_that_does_not_match_the_network_is_refused() -> None:
    store = DictStore()

    def zero_std(manifest: dict[str, Any]) -> None:
        manifest["preprocessing"]["numeric"]["age"]["std"] = 0.0

    def drop_feature(manifest: dict[str, Any]) -> None:
        manifest["preprocessing"]["numeric_order"] = ["income"]

    with pytest.raises(BundleError, match=r"unusable preprocessing: .*stds positive"):
        load_bundle(store.get_bytes, _forge(store, zero_std))
    with pytest.raises(BundleError, match=r"1 numeric features but architecture\.n_numeric is 2"):
        load_bundle(store.get_bytes, _forge(store, drop_feature))


@settings(max_examples=25, deadline=None)
@given(
    n_numeric=st.integers(0, 5),
    categorical=st.lists(st.tuples(st.integers(1, 9), st.integers(1, 4)), max_size=3),
    hidden=st.lists(st.integers(1, 9), max_size=3),
)
def test_the_counted_shapes_are_exactly_the_networks(
    n_numeric: int, categorical: list[tuple[int, int]], hidden: list[int]
) -> None:
    assume(n_numeric + len(categorical) > 0)
    arch = Architecture(
        n_numeric, tuple(c for c, _ in categorical), tuple(d for _, d in categorical), tuple(hidden)
    )
    net = TabularMLP(**arch.kwargs())
    built = {name: tuple(t.shape) for name, t in net.state_dict().items()}
    assert arch.parameter_shapes() == built
    assert arch.parameter_count() == sum(p.numel() for p in net.parameters())


def test_training_cannot_ask_for_a_model_the_server_would_refuse() -> None:
    for bad in ({"hidden_sizes": (20000, 20000)}, {"hidden_sizes": (4096, 4096)}):
        with pytest.raises(ValidationError, match="hidden_sizes"):
            ModelConfig(**bad)
    with pytest.raises(ValidationError, match="max_categories"):
        ModelConfig(max_categories=100_000, embedding_dim=256)
    started = time.perf_counter()
    with pytest.raises(TrainingError, match=r"hidden_sizes\[0\] is 20000"):
        TabularMLP(2, (), (), (20000, 20000))  # refused before a weight is allocated
    assert time.perf_counter() - started < 0.1
    ModelConfig(hidden_sizes=(2048, 2048, 2048))  # large but servable stays allowed


def test_a_manifest_the_server_would_refuse_is_not_saved(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("models.bundle.MAX_MANIFEST_BYTES", 100)
    with pytest.raises(BundleError, match=r"manifest is [\d,]+ bytes, over the limit of 100"):
        _encoded()
