"""Hostile bundles at the model server: refused before anything large is allocated, tried once
and then backed off (never retried on every poll), while the champion keeps answering.

The follower is polled by hand on a ``ManualClock``, so "thirty minutes" of polling takes as
long as the polls themselves.
"""

from __future__ import annotations

import json
import re
import resource
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from safetensors.torch import save as save_safetensors

from models.bundle import MANIFEST_MEDIA_TYPE, WEIGHTS_MEDIA_TYPE
from models.modules import TabularMLP
from registry.catalog import Catalog
from registry.errors import BundleLoadError
from registry.store import Registry
from retrain.testing import ManualClock
from retrain.testing_blobs import InMemoryBlobStore
from retrain.testing_serving import InProcessServer, register_test_bundle, serve_in_process
from serving.follower import load_version

MODEL = "loans"
Rows = tuple[list[dict[str, Any]], list[float]]
Serve = Callable[..., InProcessServer]
Manifest = dict[str, Any]


def _variant(registry: Registry, edit: Callable[[Manifest], None], base: int = 1) -> int:
    """Register, as the next version, version ``base``'s manifest changed by ``edit``."""
    record = registry.catalog.get_model_version(MODEL, base)
    manifest = json.loads(registry.get_bytes(record.bundle_digest))
    edit(manifest)
    data = json.dumps(manifest, sort_keys=True).encode()
    digest = registry.put_bytes(data, media_type=MANIFEST_MEDIA_TYPE)
    return registry.catalog.register_model_version(MODEL, digest, metrics={}, lineage={}).version


def _huge(manifest: Manifest) -> None:
    manifest["architecture"]["hidden_sizes"] = [20000, 20000]


def _point_champion(registry: Registry, version: int) -> None:
    current = registry.catalog.get_alias(MODEL, "champion")
    registry.catalog.set_alias(MODEL, "champion", version, expected=current, reason="t", actor="t")


def _rss_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize()


def _answering_version(served: InProcessServer, rows: Rows) -> int:
    body = {"instances": [rows[0][0]]}
    answer = served.client.post(f"/v1/models/{MODEL}:predict", json=body)
    assert answer.status_code == 200
    version: int = answer.json()["model_version"]
    return version


def _failures_metric(served: InProcessServer, version: int) -> float:
    text = served.client.get("/metrics").text
    pattern = rf'retrain_bundle_load_failures_total\{{model="{MODEL}",version="{version}"\}} (\S+)'
    found = re.search(pattern, text)
    return float(found.group(1)) if found else 0.0


def test_a_crafted_manifest_is_refused_in_milliseconds_without_allocating(
    registry: Registry, register: Any
) -> None:
    register(champion=True)
    crafted = _variant(registry, _huge)
    rss, peak_kib = _rss_bytes(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    started = time.perf_counter()
    with pytest.raises(BundleLoadError, match=r"hidden_sizes\[0\] is 20000") as refused:
        load_version(registry, MODEL, crafted)
    elapsed = time.perf_counter() - started
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    assert elapsed < 0.25  # it used to build 400 M parameters first: ~9-17 s, ~1.5-1.9 GB
    assert traced_peak < 2 * 2**20
    assert peak <= max(peak_kib * 1024, rss + 64 * 2**20)  # no new peak beyond 64 MiB
    assert "\n" not in str(refused.value) and "smaller model" in str(refused.value)


def test_weights_whose_shapes_disagree_with_the_manifest_are_refused(
    registry: Registry, register: Any, serve_manually: Serve, rows: Rows
) -> None:
    register(champion=True)
    pre_arch = json.loads(
        registry.get_bytes(registry.catalog.get_model_version(MODEL, 1).bundle_digest)
    )["architecture"]
    other = TabularMLP(
        pre_arch["n_numeric"], pre_arch["cardinalities"], pre_arch["embedding_dims"], [8]
    )
    weights = save_safetensors({k: v.contiguous() for k, v in other.state_dict().items()})
    weights_digest = registry.put_bytes(weights, media_type=WEIGHTS_MEDIA_TYPE)

    def swap_weights(manifest: Manifest) -> None:
        manifest["weights"] = {"digest": weights_digest, "bytes": len(weights)}

    mismatched = _variant(registry, swap_weights)
    served = serve_manually()
    _point_champion(registry, mismatched)
    served.poll()
    error = served.client.get(f"/v1/models/{MODEL}").json()["load_errors"][str(mismatched)]
    assert "'mlp.0.weight'" in error and "[16," in error and "[8," in error
    assert _answering_version(served, rows) == 1


def test_a_bad_bundle_is_tried_once_then_backed_off_while_the_champion_serves(
    registry: Registry, register: Any, serve_manually: Serve, rows: Rows
) -> None:
    register(champion=True)
    crafted = _variant(registry, _huge)
    served = serve_manually()
    _point_champion(registry, crafted)
    attempts_at: list[int] = []
    for second in range(0, 30 * 60 + 1, 5):  # thirty simulated minutes, polled every 5 s
        served.advance(5) if second else served.poll()
        if served.follower.load_failures.get((MODEL, crafted), 0) > len(attempts_at):
            attempts_at.append(second)
    # Waits of 5, 10, 20, ... s (capped at 30 min): 9 attempts, not one every 5 s (361).
    assert attempts_at == [0, 5, 15, 35, 75, 155, 315, 635, 1275]
    assert _failures_metric(served, crafted) == len(attempts_at)  # once per attempt
    status = served.client.get(f"/v1/models/{MODEL}").json()
    assert "hidden_sizes[0] is 20000" in status["load_errors"][str(crafted)]
    assert status["load_retry_in_s"][str(crafted)] == pytest.approx(2555 - 1800)
    assert status["registry"]["champion"] == crafted and status["champion"]["version"] == 1
    assert _answering_version(served, rows) == 1


def test_pointing_the_alias_at_it_again_gives_one_fresh_attempt(
    registry: Registry, register: Any, serve_manually: Serve, rows: Rows
) -> None:
    register(champion=True)
    crafted = _variant(registry, _huge)
    served = serve_manually()
    _point_champion(registry, crafted)
    served.poll()
    served.advance(5)
    failures = served.follower.load_failures
    assert failures[(MODEL, crafted)] == 2  # now waiting 10 s
    _point_champion(registry, 1)  # an operator moves it back ...
    served.advance(1)
    _point_champion(registry, crafted)  # ... and asks for it again
    served.poll()
    assert failures[(MODEL, crafted)] == 3  # tried at once, not 10 s after the last try
    served.advance(19.9)
    assert failures[(MODEL, crafted)] == 3  # the backoff goes on growing: 20 s now
    served.advance(0.1)
    assert failures[(MODEL, crafted)] == 4
    assert _answering_version(served, rows) == 1


def test_an_unreachable_store_is_retried_at_the_short_interval(
    tmp_path: Path, clock: ManualClock, rows: Rows
) -> None:
    blobs = InMemoryBlobStore()
    with Registry(blobs, Catalog.open(f"sqlite:///{tmp_path / 'catalog.db'}")) as registry:
        register_test_bundle(registry, MODEL, champion=True)
        v2 = register_test_bundle(registry, MODEL, tag="v2")
        with serve_in_process(registry, [MODEL], clock=clock) as served:
            blobs.available = False
            _point_champion(registry, v2)
            served.poll()
            for _ in range(6):  # a minute of outage: every 5 s, not doubling like a bad bundle
                served.advance(5)
            assert served.follower.load_failures[(MODEL, v2)] == 7
            assert _answering_version(served, rows) == 1
            blobs.available = True
            served.advance(5)
            assert _answering_version(served, rows) == v2
            assert served.client.get(f"/v1/models/{MODEL}").json()["load_errors"] == {}
