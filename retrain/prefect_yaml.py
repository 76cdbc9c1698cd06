"""``prefect.yaml``, written from the same deployment definitions ``retrain up`` serves.

``retrain pipelines export`` writes it; a test fails when the checked-in file is stale, so the
file is never kept by hand.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import yaml

from retrain.deployments import ENTRYPOINTS, deployment_definitions
from retrain.work_pools import LOCAL_POOL, pull_steps, work_pool_block

if TYPE_CHECKING:
    from retrain.config.specs import PipelineSpec

__all__ = ["LOCAL_POOL", "PREFECT_VERSION", "render_prefect_yaml"]

# The Prefect release the deployments are written for (the file is informational to Prefect).
PREFECT_VERSION = "3.9.1"

_HEADER = """\
# Prefect deployments of the retraining platform, for `prefect deploy --all`.
# Written by `retrain pipelines export` from the shipped specs (retrain/pipelines/*.yaml)
# and retrain/deployments.py; edit those and export again, never this file.
#
# Each pipeline gets four deployments:
#   retrain-<model>           scheduled retrain (queued: never two at once)
#   monitor-<model>           scheduled drift check; emits ml.drift.detected on ml.model.<model>
#                             unless the last retrain is inside the spec's cooldown
#   retrain-on-drift-<model>  retrain started by that event (runs arriving while one is in
#                             flight are cancelled: a storm folds into the running retrain)
#   rollback-<model>          manual rollback of the champion
# A model added later by `retrain pipelines register SPEC` gets the same four deployments.
#
# Code: the pull step enters the folder holding flows/ on the worker before the flow loads
# (entrypoints are relative to it): the worker's RETRAIN_CODE_DIR when set, else the folder
# the platform is installed from there (a checkout, or the image's site-packages); export
# with `--code-dir DIR` to name one folder for every worker instead.
#
# Work pools:
#   retrain-local  process pool (this file, as checked in):
#                    prefect work-pool create retrain-local --type process
#                    prefect deploy --all
#                    prefect worker start --pool retrain-local   # from any folder
#   retrain-k8s    Kubernetes pool: the same deployments with the image in their job variables:
#                    retrain pipelines export --pool retrain-k8s --image IMAGE -o prefect-k8s.yaml
#                    prefect deploy --all --prefect-file prefect-k8s.yaml
# (`retrain up` needs none of this: it serves the same deployments from one process.)
#
# Concurrency: each retrain deployment allows one run at a time, and the retrain flow holds
# the global concurrency limit `retrain-<model>` (one slot, created by the flow when missing),
# so the scheduled and the drift-triggered deployment of one model never train at the same
# time either. A run whose process dies gives its slot back from its crash hook.
#
# The flows read the pipeline's spec from the registry: register each spec before its first
# run (`retrain pipelines register SPEC --no-deploy`, or with `--work-pool POOL`, which also
# creates the deployments).
"""


class _PlainDumper(yaml.SafeDumper):
    """Writes shared values out in full: anchors like ``&id001`` only confuse a reader."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def render_prefect_yaml(
    specs: Sequence[PipelineSpec],
    *,
    pool: str = LOCAL_POOL,
    image: str | None = None,
    code_dir: str | None = None,
) -> str:
    """The text of ``prefect.yaml`` for ``specs``: their deployments in ``pool`` (default the
    local process pool), each with ``image`` in its job variables when given. The pull step
    enters ``code_dir``, by default each worker's own code folder (``retrain.work_pools``)."""
    document: dict[str, Any] = {
        "name": "retrain-platform",
        "prefect-version": PREFECT_VERSION,
        "build": None,
        "push": None,
        "pull": pull_steps(code_dir),
        "deployments": [
            {**d, "work_pool": work_pool_block(_pool_for(spec, d, pool, image), image)}
            for spec in specs
            for d in deployment_definitions(spec)
        ],
    }
    body = yaml.dump(document, Dumper=_PlainDumper, sort_keys=False, width=100, allow_unicode=True)
    return _HEADER + "\n" + body


def _pool_for(spec: PipelineSpec, deployment: dict[str, Any], pool: str, image: str | None) -> str:
    """``pool``, except in a container pool for a spec that trains on a GPU
    (``training.accelerator: gpu``): its retrains go to ``<pool>-gpu``, whose job template asks
    for a GPU (``infra/work-pools/retrain-k8s-gpu.json``); its monitor and rollback stay."""
    trains = deployment["entrypoint"] == ENTRYPOINTS["retrain-model"]
    on_gpu = spec.training.accelerator in ("gpu", "cuda")
    return f"{pool}-gpu" if image is not None and trains and on_gpu else pool
