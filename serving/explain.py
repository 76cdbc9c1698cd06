"""Local explanations: ``POST /v1/models/<name>:explain`` (the KServe v1 verb).

The body is a predict body (``{"instances": [...]}``, the same limits, the same checks, the
same sticky key in ``X-Request-Key`` or ``request_key``), and the version that explains is the
one that would answer ``:predict`` for that key: champion or canary by the same bucket. An
explanation is not a prediction: no per-version counter moves, nothing is shadowed, no answer
awaits feedback. Explains have their own counters and latency window (``:stats`` ->
``explain``).

Each instance gets its prediction, a base value and one attribution per feature from
integrated gradients (``models.attributions``), in the network's raw output units: ``logit``
for a binary model, ``target_std`` (the target over its training standard deviation) for
regression. The attributions add up to the instance's output minus the base value, the mean
output over the background.

The background is the version's training sample: a seeded sample of its training rows stored
at training as a registry blob, named by ``background_digest`` in the version's lineage. It
is read when the version is routed (on the alias follower's thread) and kept in memory. A
version without one (trained before, or registered by hand) is explained against a single
baseline row built from its preprocessing statistics: every numeric feature at its training
mean, every categorical at its most frequent training value. The answer says which
(``"background": "training-sample" | "preprocessor-baseline"``).
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from starlette.requests import Request
from starlette.responses import Response

from registry.errors import InvalidInstanceError, InvalidRequestError, ModelError
from registry.hashing import parse_digest
from serving.responses import json_response, problem, refusal
from serving.stats import latency_quantiles

if TYPE_CHECKING:
    from registry.store import Registry
    from serving.routing import LoadedModel, Route
    from serving.server import ModelServer

__all__ = [
    "MAX_EXPLAIN_INSTANCES",
    "Background",
    "Explainer",
    "baseline_background",
    "explain_instances",
    "read_background",
]

log = logging.getLogger(__name__)

STEPS = 16  # integrated-gradients midpoints per background row
# Each instance costs (background rows x steps) forward and backward rows: a request explains
# fewer instances than it may predict.
MAX_EXPLAIN_INSTANCES = 100
MAX_BACKGROUND_BYTES = 8 << 20
_CACHED_BACKGROUNDS = 16
_RECENT_LATENCIES = 4096


@dataclass(frozen=True, slots=True)
class Background:
    """The rows a version is explained against, transformed, and its mean raw output."""

    kind: str  # "training-sample" | "preprocessor-baseline"
    numeric: np.ndarray
    categorical: np.ndarray
    base_value: float


def _raw_outputs(bundle: Any, numeric: np.ndarray, categorical: np.ndarray) -> np.ndarray:
    import torch  # here, not at import: the server starts without it until a bundle loads

    with torch.inference_mode():
        out = bundle.net(torch.from_numpy(numeric), torch.from_numpy(categorical))
    raw: np.ndarray = out.double().numpy().reshape(-1)
    return raw


def _background(kind: str, bundle: Any, numeric: np.ndarray, categorical: np.ndarray) -> Background:
    base = float(_raw_outputs(bundle, numeric, categorical).mean())
    return Background(kind, numeric, categorical, base)


def baseline_background(bundle: Any) -> Background:
    """One row: numerics at their training mean (0 once standardised), categoricals at their
    most frequent training value (vocabularies are stored most frequent first; code 1)."""
    pre = bundle.preprocessor
    numeric = np.zeros((1, len(pre.numeric)), dtype=np.float32)
    codes = [1 if pre.vocabularies[name] else 0 for name in pre.categorical]
    categorical = np.asarray([codes], dtype=np.int64).reshape(1, len(pre.categorical))
    return _background("preprocessor-baseline", bundle, numeric, categorical)


def read_background(registry: Registry, loaded: LoadedModel) -> Background:
    """The training sample named by the version's lineage, or the preprocessor baseline when
    it names none or the sample no longer suits the bundle. Raises when the registry cannot be
    read (the caller does not cache that fallback)."""
    import pandas as pd

    lineage = registry.catalog.get_model_version(loaded.model, loaded.version).lineage or {}
    digest = lineage.get("background_digest")
    if not isinstance(digest, str):
        return baseline_background(loaded.bundle)
    info = registry.blobs.stat(parse_digest(digest))
    if info is not None and info.size > MAX_BACKGROUND_BYTES:
        log.warning("%s v%s background %s is too large", loaded.model, loaded.version, digest)
        return baseline_background(loaded.bundle)
    data = registry.get_bytes(digest)
    try:
        frame = pd.read_parquet(io.BytesIO(data))
        numeric, categorical = loaded.bundle.preprocessor.transform(frame)
    except (InvalidInstanceError, ValueError, OSError) as exc:
        log.warning("%s v%s background unusable: %s", loaded.model, loaded.version, exc)
        return baseline_background(loaded.bundle)
    if len(numeric) == 0:
        return baseline_background(loaded.bundle)
    return _background("training-sample", loaded.bundle, numeric, categorical)


def explain_instances(
    bundle: Any, background: Background, instances: list[dict[str, Any]], steps: int = STEPS
) -> list[dict[str, Any]]:
    """One explanation per instance (on a worker thread). InvalidInstanceError names the
    caller's bad value; a non-finite number is the model's failure (ModelError)."""
    from models.attributions import feature_names, integrated_gradients_arrays
    from models.bundle import predict_arrays

    pre = bundle.preprocessor
    numeric, categorical = pre.transform_records(instances)
    predictions = predict_arrays(bundle.net, bundle.task, pre, numeric, categorical)
    attributions = integrated_gradients_arrays(
        bundle.net, numeric, categorical, background.numeric, background.categorical, steps=steps
    )
    if not (np.isfinite(predictions).all() and np.isfinite(attributions).all()):
        raise ModelError("it produced a non-finite prediction or attribution")
    names = feature_names(bundle)
    return [
        {
            "prediction": float(p),
            "base_value": background.base_value,
            "attributions": dict(zip(names, row.tolist(), strict=True)),
        }
        for p, row in zip(predictions.tolist(), attributions, strict=True)
    ]


class Explainer:
    """The ``:explain`` endpoint of one ``ModelServer``: backgrounds, counters, latency."""

    def __init__(self, server: ModelServer) -> None:
        self.server = server
        self.registry: Registry = server.follower.registry
        self._backgrounds: OrderedDict[tuple[str, int, str], Background] = OrderedDict()
        self._lock = threading.Lock()
        self._counts: dict[str, dict[str, int]] = {}  # per model: ok, refused, error
        self._recent: dict[str, deque[float]] = {}
        server.follower.route_listeners.append(self.route_changed)

    # -- backgrounds -------------------------------------------------------------------------
    def route_changed(self, old: Route | None, new: Route) -> None:
        """Read the background of each newly routed version (the follower's thread)."""
        for loaded in (new.champion, new.canary):
            if loaded is not None:
                try:
                    self.background(loaded)
                except Exception as exc:  # read again at its first explain
                    log.warning("no background for %s v%s yet: %s", *_id(loaded), exc)

    def background(self, loaded: LoadedModel) -> Background:
        """The version's background, read once and kept (blocking: never on the event loop).
        If the registry cannot be read, the preprocessor baseline answers and is not kept."""
        key = (loaded.model, loaded.version, loaded.digest)
        with self._lock:
            cached = self._backgrounds.get(key)
            if cached is not None:
                self._backgrounds.move_to_end(key)
                return cached
        try:
            found = read_background(self.registry, loaded)
        except Exception as exc:
            log.warning("background of %s v%s unreadable: %s", *_id(loaded), exc)
            return baseline_background(loaded.bundle)
        with self._lock:
            self._backgrounds[key] = found
            while len(self._backgrounds) > _CACHED_BACKGROUNDS:
                self._backgrounds.popitem(last=False)
        return found

    def _explain(self, loaded: LoadedModel, instances: list[dict[str, Any]]) -> dict[str, Any]:
        background = self.background(loaded)
        explanations = explain_instances(loaded.bundle, background, instances)
        return {
            "explanations": explanations,
            "model_version": loaded.version,
            "method": "integrated_gradients",
            "units": "logit" if loaded.bundle.task == "binary" else "target_std",
            "background": background.kind,
        }

    # -- the endpoint ------------------------------------------------------------------------
    async def explain(self, request: Request, name: str) -> Response:
        started = time.perf_counter()
        server = self.server
        limits = server.limits
        try:
            limits.check_token(request.headers.get("authorization"), required=limits.auth_predict)
            route = server.follower.routes.get(name)
            if route is None:
                return problem(404, f"model {name!r} is not served here")
            if route.champion is None:
                return problem(503, f"model {name!r} has no champion loaded yet")
            most = min(limits.max_instances, MAX_EXPLAIN_INSTANCES)
            instances, key = await server.read_instances(request, most)
        except InvalidRequestError as exc:
            return refusal(exc)  # a refused request leaves no trace, as for predict
        response = await self._answer(route, instances, key)
        counts = self._counts.setdefault(name, {"ok": 0, "refused": 0, "error": 0})
        if response.status_code < 300:
            counts["ok"] += 1
            recent = self._recent.setdefault(name, deque(maxlen=_RECENT_LATENCIES))
            recent.append(time.perf_counter() - started)
        else:
            counts["refused" if response.status_code < 500 else "error"] += 1
        return response

    async def _answer(
        self, route: Route, instances: list[dict[str, Any]], key: str | None
    ) -> Response:
        """The explanation by the version ``:predict`` would pick (a failing canary's caller is
        answered by the champion, as for predict)."""
        loaded, variant, _shadow = route.pick(key)
        while True:
            try:
                body = await self.server._off_loop(self._explain, loaded, instances)
            except InvalidInstanceError as exc:
                return problem(422, str(exc), exc.field)
            except Exception as exc:
                log.error("explain failed for %s v%s: %s", route.model, loaded.version, exc)
                if variant == "canary" and route.champion is not None:
                    loaded, variant = route.champion, "champion"
                    continue
                return problem(500, f"model {route.model!r} v{loaded.version} could not explain")
            body["variant"] = variant
            return json_response(body)

    # -- counters ----------------------------------------------------------------------------
    def snapshot(self, model: str) -> dict[str, Any]:
        """``model``'s explain counters (``refused``: the caller's instance did not suit it)
        and the recent window's latency percentiles (seconds)."""
        return {
            **self._counts.get(model, {"ok": 0, "refused": 0, "error": 0}),
            "recent_latency_s": latency_quantiles(list(self._recent.get(model, ()))),
        }

    def reset_recent(self) -> None:
        """Start a clean latency window (``:reset-latency``)."""
        for recent in self._recent.values():
            recent.clear()


def _id(loaded: LoadedModel) -> tuple[str, int]:
    return loaded.model, loaded.version
