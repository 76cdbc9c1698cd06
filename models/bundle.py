"""The model bundle: safetensors weights plus a JSON manifest, both content-addressed.

Storage is two blobs. The weights blob holds the ``TabularMLP`` state dict as safetensors; the
manifest blob is canonical JSON (sorted keys, no timestamps) naming the weights by digest and
holding the architecture, preprocessing statistics, feature schema, metrics and lineage. The
bundle's digest is the manifest's digest, so one string pins everything. Loading re-hashes both
blobs and never unpickles: safetensors holds raw tensors only.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from models.architecture import (
    MAX_MANIFEST_BYTES,
    MAX_WEIGHTS_HEADER_BYTES,
    Architecture,
    weights_problem,
)
from models.modules import TabularMLP
from models.preprocessing import Preprocessor
from registry.errors import BundleError, RegistryError

__all__ = [
    "BUNDLE_FORMAT",
    "MANIFEST_MEDIA_TYPE",
    "WEIGHTS_MEDIA_TYPE",
    "EncodedBundle",
    "ModelBundle",
    "encode_bundle",
    "load_bundle",
    "predict_arrays",
    "save_bundle",
]

BUNDLE_FORMAT = "retrain-model-bundle/1"
MANIFEST_MEDIA_TYPE = "application/vnd.retrain.model-bundle+json"
WEIGHTS_MEDIA_TYPE = "application/vnd.retrain.safetensors"

TASKS = ("binary", "regression")

GetBytes = Callable[[str], bytes]
PutBytes = Callable[..., str]
SizeOf = Callable[[str], int | None]  # a blob's stored size without fetching it; None: unknown


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _canonical_json(value: Any) -> bytes:
    return (
        json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False) + "\n"
    ).encode()


@dataclass(frozen=True)
class EncodedBundle:
    """The two blobs of a bundle and their digests (``digest`` is the manifest's)."""

    weights: bytes
    manifest: bytes
    weights_digest: str
    digest: str


def encode_bundle(
    net: TabularMLP,
    *,
    architecture: Mapping[str, Any],
    preprocessor: Preprocessor,
    task: str,
    target: str,
    metrics: Mapping[str, float],
    lineage: Mapping[str, Any],
) -> EncodedBundle:
    """Bytes of a bundle; the same weights and inputs always give the same bytes."""
    state = {
        k: v.detach().to("cpu", torch.float32).contiguous() for k, v in net.state_dict().items()
    }
    weights = save_safetensors(state)
    weights_digest = _sha256(weights)
    manifest = {
        "format": BUNDLE_FORMAT,
        "weights": {"digest": weights_digest, "bytes": len(weights), "format": "safetensors"},
        "architecture": dict(architecture),
        "task": task,
        "target": target,
        "features": {
            "numeric": list(preprocessor.numeric),
            "categorical": list(preprocessor.categorical),
        },
        "preprocessing": preprocessor.to_dict(),
        "metrics": {k: float(v) for k, v in sorted(metrics.items()) if np.isfinite(v)},
        "lineage": dict(lineage),
    }
    try:
        manifest_bytes = _canonical_json(manifest)
    except (TypeError, ValueError) as exc:
        raise BundleError(f"bundle manifest is not plain JSON: {exc}") from exc
    if len(manifest_bytes) > MAX_MANIFEST_BYTES:  # the server would refuse to load it
        raise BundleError(
            f"bundle manifest is {len(manifest_bytes):,} bytes, over the limit of "
            f"{MAX_MANIFEST_BYTES:,}; lower model.max_categories or use fewer features"
        )
    return EncodedBundle(weights, manifest_bytes, weights_digest, _sha256(manifest_bytes))


def save_bundle(put_bytes: PutBytes, encoded: EncodedBundle) -> str:
    """Store weights first, then the manifest that names them; returns the bundle digest."""
    stored_weights = put_bytes(encoded.weights, media_type=WEIGHTS_MEDIA_TYPE)
    stored = put_bytes(encoded.manifest, media_type=MANIFEST_MEDIA_TYPE)
    if stored_weights != encoded.weights_digest or stored != encoded.digest:
        raise BundleError("the store returned unexpected digests for the bundle blobs")
    return stored


class ModelBundle:
    """A verified, loaded model ready to predict on CPU."""

    def __init__(
        self,
        digest: str,
        manifest: dict[str, Any],
        net: TabularMLP,
        preprocessor: Preprocessor | None = None,
    ) -> None:
        self.digest = digest
        self.manifest = manifest
        self.net = net.eval()
        if preprocessor is None:
            preprocessor = Preprocessor.from_dict(manifest["preprocessing"])
        self.preprocessor = preprocessor
        self.task: str = manifest["task"]
        self.target: str = manifest["target"]

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.preprocessor.feature_names

    @property
    def metrics(self) -> dict[str, float]:
        return dict(self.manifest.get("metrics", {}))

    def predict(self, instances: pd.DataFrame | Sequence[Mapping[str, Any]]) -> np.ndarray:
        """P(y=1) for binary tasks, the predicted value for regression (float64 [n]).

        Raises InvalidInstanceError naming the first absent or malformed feature.
        """
        if isinstance(instances, pd.DataFrame):
            numeric, categorical = self.preprocessor.transform(instances)
        else:
            numeric, categorical = self.preprocessor.transform_records(instances)
        return predict_arrays(self.net, self.task, self.preprocessor, numeric, categorical)


def predict_arrays(
    net: TabularMLP,
    task: str,
    preprocessor: Preprocessor,
    numeric: np.ndarray,
    categorical: np.ndarray,
) -> np.ndarray:
    """Predictions of ``net`` on transformed inputs: P(y=1) for binary tasks, else the value
    on the target's scale (float64 [n]). ``net`` must be on the CPU in eval mode."""
    with torch.inference_mode():
        out = net(torch.from_numpy(numeric), torch.from_numpy(categorical))
    raw = out.double().numpy()
    if task == "binary":
        result: np.ndarray = 1.0 / (1.0 + np.exp(-raw))
        return result
    values: np.ndarray = raw * preprocessor.target_std + preprocessor.target_mean
    return values


def load_bundle(get_bytes: GetBytes, digest: str, *, size_of: SizeOf | None = None) -> ModelBundle:
    """Fetch, verify and build the bundle ``digest``; BundleError if anything does not match.

    Everything that sizes an allocation is checked before it is made: the blobs' sizes (asked
    of ``size_of``, the store's stored size, before fetching; else once fetched), then the
    architecture against ``models.architecture.LIMITS``, then the weights header's tensor
    names and shapes against that architecture. Only then are tensors read and the net built.
    """
    manifest_bytes = _fetch(get_bytes, digest, "manifest", size_of, MAX_MANIFEST_BYTES)
    manifest, architecture = _read_manifest(manifest_bytes, digest)
    try:
        preprocessor = _matching_preprocessor(manifest, architecture)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise BundleError(f"bundle {digest} has unusable preprocessing: {exc}") from exc
    # The data section is exactly 4 bytes per parameter; the header is bounded on its own.
    most = 8 + MAX_WEIGHTS_HEADER_BYTES + 4 * architecture.parameter_count()
    weights = _fetch(get_bytes, manifest["weights"]["digest"], "weights", size_of, most)
    problem = weights_problem(weights, architecture)
    if problem is not None:
        raise BundleError(f"bundle {digest} weights do not fit its manifest: {problem}")
    try:
        net = TabularMLP(**architecture.kwargs())
        net.load_state_dict(load_safetensors(weights), strict=True)
    except (SafetensorError, RuntimeError, TypeError, ValueError, KeyError) as exc:
        raise BundleError(f"bundle {digest} weights do not fit its manifest: {exc}") from exc
    return ModelBundle(digest, manifest, net, preprocessor)


def _read_manifest(data: bytes, digest: str) -> tuple[dict[str, Any], Architecture]:
    """The parsed manifest and its architecture, within the limits (BundleError naming the
    field otherwise)."""
    try:
        manifest = json.loads(data)
        if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
            raise BundleError(f"blob {digest} is not a model bundle ({BUNDLE_FORMAT})")
        weights = manifest["weights"]
        if not isinstance(weights, dict) or not isinstance(weights.get("digest"), str):
            raise ValueError("weights.digest must be a digest string")
        if manifest.get("task") not in TASKS or not isinstance(manifest.get("target"), str):
            raise ValueError(f"task must be one of {', '.join(TASKS)} and target a name")
        architecture = Architecture.from_manifest(manifest["architecture"])
    except BundleError:
        raise
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise BundleError(f"bundle {digest} has an unreadable manifest: {exc}") from exc
    problem = architecture.problem()
    if problem is not None:
        raise BundleError(
            f"bundle {digest} is refused before loading: {problem}; retrain it with a smaller "
            "model (the spec's model: settings)"
        )
    return manifest, architecture


def _matching_preprocessor(manifest: Mapping[str, Any], architecture: Architecture) -> Preprocessor:
    pre = Preprocessor.from_dict(manifest["preprocessing"])
    if len(pre.numeric) != architecture.n_numeric:
        raise ValueError(
            f"{len(pre.numeric)} numeric features but architecture.n_numeric is "
            f"{architecture.n_numeric}"
        )
    if pre.cardinalities != architecture.cardinalities:
        raise ValueError("the vocabularies do not match architecture.cardinalities")
    # A zero or NaN scale would pass loading and then answer every request with NaN.
    scales = (*pre.stds, pre.target_std)
    if not np.isfinite([*pre.means, *scales, pre.target_mean]).all() or min(scales) <= 0:
        raise ValueError("its means and stds must be finite and its stds positive")
    return pre


def _fetch(get_bytes: GetBytes, digest: str, what: str, size_of: SizeOf | None, most: int) -> bytes:
    """The verified bytes of blob ``digest``, refused unread when the store says it is over
    ``most`` bytes (and refused once read if the store could not say)."""
    try:
        stored = size_of(digest) if size_of is not None else None
        if stored is not None and stored > most:
            raise _too_big(what, digest, stored, most)
        data = get_bytes(digest)
    except RegistryError as exc:
        raise BundleError(f"cannot read bundle {what} {digest}: {exc}") from exc
    if len(data) > most:
        raise _too_big(what, digest, len(data), most)
    if _sha256(data) != digest:
        raise BundleError(f"bundle {what} {digest} was tampered with: its bytes do not match")
    return data


def _too_big(what: str, digest: str, size: int, most: int) -> BundleError:
    return BundleError(
        f"bundle {what} {digest} is {size:,} bytes, over the limit of {most:,} for it; "
        "retrain it with a smaller model"
    )
