"""Follows the registry's aliases and canary weight, loads bundles, swaps routes atomically.

A background thread polls the catalog every ``poll_interval_s``. A version it has not seen is
loaded and verified *before* the route changes; a bundle that fails to load is never swapped in
(the error is reported and the old route stays). A bundle that failed verification is not
tried again on every poll: ``serving.load_backoff`` paces the retries. Recently served versions
stay warm in memory, so moving the champion back (a rollback) needs no load and no blob store.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from registry.champions import previous_champion
from registry.errors import BundleLoadError
from registry.hashing import parse_digest
from registry.release import ReleaseState, ReleaseStateReader, repair_releases
from serving.load_backoff import LoadBackoff
from serving.routing import LoadedModel, Route

if TYPE_CHECKING:
    from registry.store import Registry

__all__ = ["AliasFollower", "load_version"]

log = logging.getLogger(__name__)


def load_version(registry: Registry, model: str, version: int) -> LoadedModel:
    """Load and verify the bundle of ``model`` ``version``; ``BundleLoadError`` if it fails."""
    try:
        record = registry.catalog.get_model_version(model, version)
    except Exception as exc:
        raise BundleLoadError(f"{model} v{version} failed to load: {exc}") from exc
    return load_digest(registry, model, version, record.bundle_digest)


def load_digest(registry: Registry, model: str, version: int, digest: str) -> LoadedModel:
    """Load and verify bundle ``digest`` as ``model`` ``version``; ``BundleLoadError`` if not.

    Blob sizes are asked of the store first, so an oversized blob is refused unread.
    """
    from models.bundle import load_bundle

    def stored_size(blob: str) -> int | None:
        info = registry.blobs.stat(parse_digest(blob))
        return None if info is None else info.size

    try:
        bundle = load_bundle(registry.get_bytes, digest, size_of=stored_size)
    except Exception as exc:
        raise BundleLoadError(f"{model} v{version} failed to load: {exc}") from exc
    loaded_digest = getattr(bundle, "digest", digest)
    if loaded_digest != digest:
        raise BundleLoadError(
            f"{model} v{version} bundle digest {loaded_digest} != registered {digest}"
        )
    return LoadedModel(model, version, digest, bundle, datetime.now(UTC))


class AliasFollower:
    """Keeps one ``Route`` per served model in step with the registry.

    ``clock`` (wall time: lease expiries, the last poll) and ``monotonic`` (retry and repair
    pacing) default to the system's; tests pass a manual clock and call ``poll_once``. A
    version that failed to load is retried after ``retry_failed_s``; a bad bundle's wait then
    doubles with each failure, up to ``max_backoff_s``.
    """

    def __init__(
        self,
        registry: Registry,
        models: list[str] | None = None,
        *,
        poll_interval_s: float = 0.2,
        warm_versions: int = 4,
        retry_failed_s: float = 5.0,
        max_backoff_s: float = 1800.0,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self.clock = clock
        self.monotonic = monotonic
        self.models = list(models) if models else None  # None: every model in the catalog
        self.poll_interval_s = poll_interval_s
        self.routes: dict[str, Route] = {}
        # Called with (old, new) on this thread after each route swap (metrics retirement).
        self.route_listeners: list[Callable[[Route | None, Route], None]] = []
        self.desired: dict[str, ReleaseState] = {}  # what the registry asks for, per model
        self.load_errors: dict[tuple[str, int], str] = {}
        self.load_failures: dict[tuple[str, int], int] = {}
        self.last_poll_error: str | None = None
        self.last_poll_at: float = 0.0
        self._reader = ReleaseStateReader(registry.catalog, clock=clock)
        self._warm: OrderedDict[tuple[str, int], LoadedModel] = OrderedDict()
        self._warm_limit = max(2, warm_versions)
        self._backoff = LoadBackoff(
            retry_s=retry_failed_s, max_backoff_s=max_backoff_s, monotonic=monotonic
        )
        self._digests: dict[tuple[str, int], str] = {}
        self._aimed: dict[str, set[int]] = {}  # versions the aliases pointed at, last poll
        self._repaired_at: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, *, background: bool = True) -> None:
        """Poll once (so the server starts ready), warm previous champions, then keep polling
        in a background thread (``background=False``: the caller polls with ``poll_once``)."""
        self.poll_once()
        self._warm_previous_champions()
        if not background:
            return
        self._thread = threading.Thread(target=self._run, name="alias-follower", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling and wait for the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.poll_interval_s):
            self.poll_once()

    # -- polling -----------------------------------------------------------------------------
    def served_models(self) -> list[str]:
        """The models this server follows."""
        return self.models if self.models is not None else self.registry.catalog.list_models()

    def poll_once(self) -> None:
        """Bring every route in step with the registry; never raises."""
        try:
            for model in self.served_models():
                self._sync(model)
            self.last_poll_error = None
        except Exception as exc:  # the catalog is down: keep serving what we have
            self.last_poll_error = f"{type(exc).__name__}: {exc}"
            log.warning("alias poll failed: %s", self.last_poll_error)
        self.last_poll_at = self.clock()

    def _sync(self, model: str) -> None:
        state = self._reader.read(model)
        self.desired[model] = state
        if state.orphaned:  # routed at 0% already; also clean the registry, now and then
            self._repair(model)
        self._note_aims(model, state)
        old = self.routes.get(model)
        champion = old.champion if old is not None else None
        if state.champion is not None and (champion is None or champion.version != state.champion):
            champion = self._get(model, state.champion) or champion
        canary = None
        if state.canary is not None and state.canary != state.champion:
            canary = self._get(model, state.canary)
        weight = state.weight if canary is not None else 0.0
        route = Route(model, champion, canary, weight, state.shadow and canary is not None)
        if route != old:
            self.routes[model] = route  # one assignment: requests see old or new, never half
            for listener in self.route_listeners:
                listener(old, route)

    def _repair(self, model: str) -> None:
        now = self.monotonic()
        if now - self._repaired_at.get(model, float("-inf")) < 5.0:
            return
        self._repaired_at[model] = now
        try:
            repair_releases(self.registry.catalog, [model], actor="model-server", now=self.clock())
        except Exception as exc:
            log.warning("could not repair the release of %s: %s", model, exc)

    def _note_aims(self, model: str, state: ReleaseState) -> None:
        """An alias newly pointed at a version asks for a fresh try, even of a bad bundle."""
        aimed = {v for v in (state.champion, state.canary) if v is not None}
        for version in aimed - self._aimed.get(model, set()):
            key = (model, version)
            try:
                digest: str | None = self._digest_of(key)
            except Exception:  # the load attempt will report it
                digest = None
            self._backoff.reaimed(key, digest)
        self._aimed[model] = aimed

    def _digest_of(self, key: tuple[str, int]) -> str:
        digest = self._digests.get(key)
        if digest is None:
            digest = self.registry.catalog.get_model_version(*key).bundle_digest
            self._digests[key] = digest  # a version's bundle never changes
        return digest

    def _get(self, model: str, version: int) -> LoadedModel | None:
        key = (model, version)
        loaded = self._warm.get(key)
        if loaded is not None:
            self._warm.move_to_end(key)
            return loaded
        digest = self._digests.get(key)
        if not self._backoff.due(key, digest):
            return None
        try:
            digest = self._digest_of(key)
            if self._backoff.due(key, digest):
                loaded = load_digest(self.registry, model, version, digest)
            else:  # another version with the same bundle failed: no new attempt
                self.load_errors[key] = self._backoff.bad_error(digest) or "bad bundle"
                return None
        except Exception as exc:  # reported, never swapped in; counted once per attempt
            self._backoff.failed(key, digest, exc)
            self.load_errors[key] = str(exc)
            self.load_failures[key] = self.load_failures.get(key, 0) + 1
            log.error("not swapping in %s v%s: %s", model, version, exc)
            return None
        self._backoff.loaded(key, digest)
        self.load_errors.pop(key, None)
        self._keep_warm(loaded)
        return loaded

    def _keep_warm(self, loaded: LoadedModel) -> None:
        self._warm[(loaded.model, loaded.version)] = loaded
        in_use = {
            (r.model, m.version)
            for r in self.routes.values()
            for m in (r.champion, r.canary)
            if m is not None
        }
        for key in list(self._warm):
            if len(self._warm) <= self._warm_limit:
                break
            if key not in in_use and key != (loaded.model, loaded.version):
                del self._warm[key]

    def _warm_previous_champions(self) -> None:
        """Load each model's previous champion now, so the first rollback needs no blob store."""
        try:
            for model in self.served_models():
                previous = previous_champion(self.registry.catalog, model)
                if previous is not None:
                    self._get(model, previous)
        except Exception as exc:
            log.warning("could not warm previous champions: %s", exc)

    # -- reporting ---------------------------------------------------------------------------
    def _retry_waits(self, model: str) -> dict[str, float]:
        """Seconds until each failed version of ``model`` is tried again."""
        waits = {}
        for m, v in list(self.load_errors):
            wait = self._backoff.retry_in_s((m, v), self._digests.get((m, v)))
            if m == model and wait is not None:
                waits[str(v)] = wait
        return waits

    def warm_versions(self, model: str) -> list[int]:
        """Versions of ``model`` held in memory."""
        return sorted(v for (m, v) in list(self._warm) if m == model)

    def readiness(self, model: str) -> tuple[str, str | None]:
        """``("ready", None)`` when ``model`` has a champion loaded; ``("no_champion", why)``
        when the registry names none (not a failure: a newly registered model); otherwise
        ``("unready", why)``: not read from the registry yet, or its champion not loaded.

        A model still answering from its previous champion while a new one fails to load is
        ready: it serves, and the load error shows in its status."""
        route = self.routes.get(model)
        if route is not None and route.champion is not None:
            return "ready", None
        desired = self.desired.get(model)
        if desired is None:
            error = self.last_poll_error
            return "unready", "not read from the registry yet" + (f": {error}" if error else "")
        if desired.champion is None:
            return "no_champion", "no champion alias in the registry"
        error = self.load_errors.get((model, desired.champion))
        return "unready", f"champion v{desired.champion} is not loaded" + (
            f": {error}" if error else ""
        )

    def status(self, model: str) -> dict[str, Any]:
        """What ``GET /v1/models/<name>`` shows."""
        route = self.routes.get(model)
        desired = self.desired.get(model)

        def describe(loaded: LoadedModel | None, share: float) -> dict[str, Any] | None:
            if loaded is None:
                return None
            return {
                "version": loaded.version,
                "digest": loaded.digest,
                "weight": share,
                "loaded_at": loaded.loaded_at.isoformat(),
            }

        champion_share, weight = route.shares() if route is not None else (100.0, 0.0)
        return {
            "name": model,
            "ready": route is not None and route.champion is not None,
            "champion": describe(route.champion if route else None, champion_share),
            "canary": describe(route.canary if route else None, weight),
            "shadow": bool(route and route.shadow),
            "registry": None
            if desired is None
            else {
                "champion": desired.champion,
                "canary": desired.canary,
                "canary_weight": desired.weight,
                "release_in_progress": desired.locked_by is not None,
            },
            "warm_versions": self.warm_versions(model),
            "load_errors": {str(v): msg for (m, v), msg in self.load_errors.items() if m == model},
            "load_retry_in_s": self._retry_waits(model),
            "poll_error": self.last_poll_error,
            "last_poll_age_s": round(self.clock() - self.last_poll_at, 3),
        }
