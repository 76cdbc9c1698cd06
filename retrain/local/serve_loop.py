"""The served-deployments process (``retrain pipelines serve``, a child of ``retrain up``): a
Prefect Runner that keeps up with the spec store and outlives Prefect outages.

- Every ``watch_s`` seconds it compares the registered specs (name, digest and whether the
  pipeline is paused) with what it serves. A pipeline registered, or registered again with a
  changed spec, while it runs gets its four deployments added to the running Runner: its runs
  start without a restart. A paused pipeline's deployments are applied paused (so serving
  them never resumes it). A pipeline removed (``retrain pipelines rm``) has its deployments
  deleted and is served no more: a Runner cannot drop a deployment, so a new one takes over.
- On the same tick it asks the API's ``/health``. The first failure prints one line, the
  recovery another (one pair per outage). Prefect's Runner gives up after a few failed polls;
  once the API answers again a new Runner serves every deployment again, checking 1 s, 2 s,
  4 s ... (at most ``max_pause_s``) apart while it is down.

A Runner that stops on purpose (SIGTERM) ends the loop; ``retrain up`` restarts a process that
exits anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, TextIO

import httpx

if TYPE_CHECKING:
    from prefect.runner import Runner

    from registry.store import Registry
    from retrain.config.specs import PipelineSpec

__all__ = ["PAUSED_MARK", "LiveServer", "RegistrySpecs", "SpecSource", "serve_live"]

PAUSED_MARK = " paused"
"""Appended to a paused pipeline's digest in ``SpecSource.digests``."""


class _Restart(Exception):
    """A pipeline is no longer served: start a new Runner without it."""


class SpecSource(Protocol):
    """Where the pipelines to serve come from."""

    def digests(self) -> dict[str, str]:
        """Name -> digest of every pipeline to serve now (``PAUSED_MARK`` after it if paused)."""
        ...

    def spec(self, name: str) -> PipelineSpec:
        """The current spec of ``name``."""
        ...


@dataclass
class RegistrySpecs:
    """The registered pipelines (all, or only ``names``), read from the spec store each time."""

    registry: Registry
    names: Sequence[str] | None = None

    def digests(self) -> dict[str, str]:
        from retrain.config.spec_store import list_registered_pipelines

        pipelines = list_registered_pipelines(self.registry)  # removed ones are not listed
        return {
            p.name: p.digest + (PAUSED_MARK if p.paused else "")
            for p in pipelines
            if self.names is None or p.name in self.names
        }

    def spec(self, name: str) -> PipelineSpec:
        from retrain.config.spec_store import get_registered_spec

        return get_registered_spec(self.registry, name)


@dataclass
class LiveServer:
    """Serves ``source``'s deployments on ``api_url`` until stopped on purpose."""

    source: SpecSource
    api_url: str
    watch_s: float = 2.0
    max_pause_s: float = 30.0
    limit: int | None = None
    out: TextIO = field(default_factory=lambda: sys.stdout)
    served: dict[str, str] = field(default_factory=dict)
    _down_since: float | None = None
    _store_down: bool = False

    def say(self, line: str) -> None:
        print(line, file=self.out, flush=True)

    async def run(self) -> None:
        """Serve, waiting out outages, until the Runner is stopped on purpose."""
        pause = 1.0
        while True:
            await self._wait_for_api()
            try:
                await self._serve_once()
                return  # the Runner returned: it was told to stop
            except _Restart:
                continue
            except Exception as exc:  # the Runner gave up (API gone) or failed to start
                if await self._healthy():  # not an outage: do not spin
                    self.say(
                        f"deployment runner stopped ({_first_line(exc)}); again in {pause:.0f} s"
                    )
                    await asyncio.sleep(pause)
                    pause = min(self.max_pause_s, pause * 2)
                else:
                    self._went_down()

    async def _serve_once(self) -> None:
        from prefect.runner import Runner

        runner = Runner(name="retrain-deployments", pause_on_shutdown=False, limit=self.limit)
        self.served = {}
        await self._sync(runner, announce=False)
        self.say(f"serving {', '.join(sorted(self.served)) or 'no pipeline yet'} on {self.api_url}")
        # Prefect's poll loop prints multi-line error summaries on stdout when the API is down;
        # the outage is reported here, once.
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
            task = asyncio.create_task(runner.start())
            try:
                await self._watch(task, runner)
            finally:  # never leave a Runner behind when a new one is about to start
                if not task.done():
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task

    async def _watch(self, task: asyncio.Task[None], runner: Runner) -> None:
        """Until the Runner stops: look at the API and the spec store every ``watch_s``."""
        failed = 0
        while True:
            done, _ = await asyncio.wait({task}, timeout=self.watch_s)
            if done:
                task.result()  # raises what stopped it
                return
            if await self._healthy():
                failed = 0
                self._came_back()
                await self._sync(runner, announce=True)
            else:
                failed += 1
                if failed >= 2:  # one slow answer on a busy machine is not an outage
                    self._went_down()

    async def _sync(self, runner: Runner, *, announce: bool) -> None:
        """Add the deployments of every pipeline whose registered spec is not served yet."""
        from retrain.deployments import build_deployments, create_retrain_limits

        try:
            current = await asyncio.to_thread(self.source.digests)
        except Exception as exc:  # the spec store is unreachable: keep serving what we serve
            if not self._store_down:
                self.say(f"cannot read the registered pipelines: {_first_line(exc)}")
            self._store_down = True
            return
        self._store_down = False
        gone = sorted(set(self.served) - set(current))
        if gone:
            await self._drop(gone)
        for name, digest in sorted(current.items()):
            if self.served.get(name) == digest:
                continue
            try:
                spec = await asyncio.to_thread(self.source.spec, name)
                paused = digest.endswith(PAUSED_MARK)
                deployments = await asyncio.to_thread(build_deployments, spec, paused=paused)
                await asyncio.to_thread(create_retrain_limits, [name])
                for deployment in deployments:
                    await runner.aadd_deployment(deployment)
            except Exception as exc:  # one pipeline's trouble never stops the others
                if not await self._healthy():
                    return  # the outage is reported by the caller; retried after it
                self.say(f"cannot serve pipeline {name}: {_first_line(exc)}")
            else:
                if announce:
                    verb = "updated" if name in self.served else "now serving"
                    state = " (paused)" if digest.endswith(PAUSED_MARK) else ""
                    self.say(f"{verb} pipeline {name} ({digest[7:19]}){state}")
            self.served[name] = digest

    async def _drop(self, names: list[str]) -> None:
        """Delete the deployments of pipelines removed from the store, then start a new Runner
        (raises ``_Restart``): one cannot take deployments back."""
        from retrain.deployments import delete_deployments

        for name in names:
            try:
                await asyncio.to_thread(delete_deployments, name)
            except Exception as exc:  # the deployments may be gone already; stop serving anyway
                self.say(f"cannot delete the deployments of {name}: {_first_line(exc)}")
            self.say(f"no longer serving pipeline {name} (removed)")
            del self.served[name]
        raise _Restart

    async def _wait_for_api(self) -> None:
        """Return once the API answers; while it does not, check 1 s, 2 s, 4 s ... apart."""
        pause = 1.0
        while not await self._healthy():
            self._went_down()
            await asyncio.sleep(pause)
            pause = min(self.max_pause_s, pause * 2)
        self._came_back()

    async def _healthy(self) -> bool:
        try:
            async with httpx.AsyncClient(timeout=5.0) as client:
                response = await client.get(f"{self.api_url.rstrip('/')}/health")
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    def _went_down(self) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
            self.say(
                f"Prefect API at {self.api_url} unreachable; serving resumes when it answers "
                f"(checked every 1-{self.max_pause_s:.0f} s)"
            )

    def _came_back(self) -> None:
        if self._down_since is not None:
            down = time.monotonic() - self._down_since
            self._down_since = None
            self.say(f"Prefect API at {self.api_url} answers again after {down:.0f} s")


def _first_line(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def serve_live(
    source: SpecSource, *, api_url: str, watch_s: float = 2.0, limit: int | None = None
) -> None:
    """Serve ``source``'s deployments from this process until Ctrl-C or SIGTERM (blocking)."""
    import logging

    from prefect.exceptions import TerminationSignal

    # Prefect reports its websocket's reconnects (with a traceback) on every outage; the
    # outage itself is reported here, once. A filter, not a level: Prefect's logging setup
    # resets levels.
    observer = logging.getLogger("prefect.FlowRunCancellingObserver")
    observer.addFilter(lambda record: record.levelno >= logging.ERROR)
    server = LiveServer(source, api_url, watch_s=watch_s, limit=limit)
    with contextlib.suppress(KeyboardInterrupt, TerminationSignal):
        asyncio.run(server.run())
