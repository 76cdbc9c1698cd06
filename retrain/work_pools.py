"""Where a worker finds the code of a deployment: the pull step, the entrypoint, the image.

A worker runs a deployment's flow in a fresh process that first runs the deployment's pull
steps, then loads the entrypoint relative to the folder they leave it in. Every deployment of
the platform carries one pull step, ``retrain.work_pools.enter_code_dir``, which enters the
code folder (the one holding ``flows/``) of the worker it runs on:

- the folder the deployment names (``--code-dir``), when it names one;
- else the worker's ``RETRAIN_CODE_DIR``, read when the flow run starts;
- else the folder the platform is installed from on that worker (a checkout installed with
  ``pip install -e .``, or ``site-packages`` in the image): a worker with the platform
  installed needs no setting at all.

Prefect's own ``set_working_directory`` with ``{{ $RETRAIN_CODE_DIR }}`` would not do:
``prefect deploy`` fills such a placeholder in from the *deploying* shell when it is set
there, and a worker without it starts in its temporary folder. Entrypoints stay relative
(``flows/retrain_model.py:retrain_model``): nothing records the folder of the machine that
created the deployment. For a Kubernetes pool the image goes into each deployment's job
variables, since ``prefect deploy --all --job-variable`` does not apply them to several
deployments at once.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from registry.errors import ConfigError

if TYPE_CHECKING:
    from prefect.deployments.runner import RunnerDeployment

__all__ = [
    "CODE_DIR_ENV",
    "LOCAL_POOL",
    "PULL_STEP",
    "PullSteps",
    "enter_code_dir",
    "place_in_pool",
    "pull_steps",
    "work_pool_block",
]

LOCAL_POOL = "retrain-local"
CODE_DIR_ENV = "RETRAIN_CODE_DIR"
PULL_STEP = "retrain.work_pools.enter_code_dir"


def enter_code_dir(directory: str | None = None) -> dict[str, str]:
    """Pull step: make the folder holding ``flows/`` the working directory (see the module
    docstring for which folder); returns it as ``directory`` for later steps."""
    chosen = directory or os.environ.get(CODE_DIR_ENV) or installed_code_dir()
    folder = Path(chosen).expanduser().absolute()
    if not (folder / "flows").is_dir():
        source = "the deployment's code folder" if directory else f"{CODE_DIR_ENV}"
        raise ConfigError(
            f"{source} {folder} holds no flows/ folder: point {CODE_DIR_ENV} on the worker "
            "at the folder holding the platform's code"
        )
    os.chdir(folder)
    return {"directory": str(folder)}


def installed_code_dir() -> str:
    """The folder the platform is installed from on this machine: ``flows/`` is installed
    next to ``retrain/`` (a checkout, or ``site-packages``)."""
    return str(Path(__file__).resolve().parents[1])


def pull_steps(code_dir: str | None = None) -> list[dict[str, Any]]:
    """The pull steps of every deployment: enter the code folder (``code_dir`` when given,
    else the worker's own, found when the flow run starts)."""
    return [{PULL_STEP: {"directory": code_dir} if code_dir else {}}]


def work_pool_block(pool: str, image: str | None = None) -> dict[str, Any]:
    """A deployment's ``work_pool`` in ``prefect.yaml``: the pool, its default queue and, for
    a container pool, the image in the deployment's own job variables."""
    block: dict[str, Any] = {"name": pool, "work_queue_name": "default"}
    if image:
        block["job_variables"] = {"image": image}
    return block


class PullSteps:
    """Prefect's runner storage reduced to what a deployment records: its pull steps.

    ``RunnerDeployment.apply`` asks its storage for the pull steps to record; this one gives
    the platform's, and keeps no code of its own (the worker's folder or image has it).
    """

    def __init__(self, steps: list[dict[str, Any]]) -> None:
        self.steps = steps
        self._base = Path.cwd()

    def set_base_path(self, path: Path) -> None:
        """Where a runner would put pulled code (unused: nothing is pulled)."""
        self._base = path

    @property
    def pull_interval(self) -> int | None:
        """Never pulled again: the code is already where the step points."""
        return None

    @property
    def destination(self) -> Path:
        """The runner's base path (unused: nothing is pulled)."""
        return self._base

    async def pull_code(self) -> None:
        """Nothing to pull: the worker's folder or image holds the code."""

    def to_pull_step(self) -> list[dict[str, Any]]:
        """The pull steps the deployment records."""
        return self.steps

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PullSteps) and other.steps == self.steps

    __hash__ = None  # type: ignore[assignment]


def place_in_pool(
    deployment: RunnerDeployment,
    entrypoint: str,
    *,
    pool: str,
    code_dir: str | None = None,
    image: str | None = None,
) -> None:
    """Make ``deployment`` one that a worker of ``pool`` runs from anywhere: the pull step
    into the code folder, the entrypoint relative to it, and the image (if any)."""
    deployment.work_pool_name = pool
    deployment.entrypoint = entrypoint
    deployment.storage = PullSteps(pull_steps(code_dir))
    if image:
        deployment.job_variables = {**(deployment.job_variables or {}), "image": image}
