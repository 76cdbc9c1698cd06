"""Where ``retrain demo`` keeps its world: the same home ``retrain up`` opens.

The demo writes its registry, blobs, MLflow store and Prefect database into the settings'
home (``.retrain`` by default), so ``retrain up`` afterwards shows the demo everywhere:
Prefect runs and their artifacts, MLflow experiments, the model server following the
demo's champion, report links that open. It starts afresh each time, so it only erases what
it owns: a home that a running stack uses, or that holds models the demo did not make, is
refused with the one command that runs the demo in its own home instead.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from registry.errors import ConfigError
from retrain.local.stack_state import read_live_state

if TYPE_CHECKING:
    from retrain.config.settings import Settings

__all__ = ["MARKER", "prepare_demo_home", "print_where_to_look"]

MARKER = "demo.json"
# What the platform writes in a home; the demo erases these and nothing else (the home may
# be any folder a user points RETRAIN_HOME at). Logs and the alert token stay.
_OWNED = (
    "registry.db",
    "mlflow.db",
    "blobs",
    "mlartifacts",
    "checkpoints",
    "prefect",
    "data",
    "window",
    "recent",
    MARKER,
)
_SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal", ".migrate.lock")


def prepare_demo_home(settings: Settings) -> Path:
    """Empty the platform's state in ``settings.home`` for a fresh demo and mark it the
    demo's; ``ConfigError`` (one line, nothing erased) when that would lose someone's work."""
    home = settings.home.resolve()
    running = read_live_state(home)
    if running is not None:
        raise ConfigError(
            f"`retrain up` (pid {running.pid}) is running on {home}: stop it first, "
            "the demo starts its world afresh there"
        )
    foreign = _foreign_models(settings)
    if foreign:
        where = home if settings.database_url is None else "RETRAIN_DATABASE_URL's catalog"
        raise ConfigError(
            f"{where} holds models the demo did not make ({', '.join(foreign)}) and the demo "
            f"starts afresh: run it in its own home, e.g. RETRAIN_HOME={home}-demo retrain demo"
            + ("" if settings.database_url is None else " with RETRAIN_DATABASE_URL unset")
        )
    for name in _OWNED:
        for path in [home / name, *(home / f"{name}{s}" for s in _SQLITE_SIDE_FILES)]:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
    home.mkdir(parents=True, exist_ok=True)
    (home / MARKER).write_text(json.dumps({"made_by": "retrain demo"}) + "\n", encoding="utf-8")
    return home


def _foreign_models(settings: Settings) -> list[str]:
    """Models, and pipelines other than the shipped ones, in a registry the demo would reuse:
    none for a home the demo made or one without a registry."""
    home = settings.home.resolve()
    if settings.database_url is None and (
        (home / MARKER).is_file() or not (home / "registry.db").is_file()
    ):
        return []
    from retrain.config.spec_store import list_registered_pipelines
    from retrain.config.specs import default_spec_paths
    from retrain.config.wiring import build_registry

    shipped = {p.stem for p in default_spec_paths()}
    with build_registry(settings) as registry:
        models = set(registry.catalog.list_models())
        pipelines = {p.name for p in list_registered_pipelines(registry)}
    return sorted(models | (pipelines - shipped))


def print_where_to_look(settings: Settings, sent: int, elapsed: float) -> None:
    """The closing lines: the one command that opens the demo's world, and where to click."""
    from retrain.config.wiring import serving_url
    from retrain.local.demo_support import MODEL
    from retrain.local.stack import blob_server_url
    from retrain.terminal import console

    home = settings.home.resolve()
    default = Path(".retrain").resolve()
    prefix = "" if home == default else f"RETRAIN_HOME={home} "
    prefect = f"http://127.0.0.1:{settings.prefect_port}"
    console.print(f"\n{sent} requests served; demo took {elapsed:.0f} s. Open it all with:\n")
    console.print(f"  {prefix}retrain up --mlflow-ui\n", style="bold", markup=False, soft_wrap=True)
    places = [
        ("Prefect UI: runs and their logs", f"{prefect}/runs"),
        (
            "Prefect UI: drift, gate, canary",
            f"{prefect}/artifacts (report links open in the browser)",
        ),
        ("MLflow UI: experiments", f"http://127.0.0.1:{settings.mlflow_port}"),
        ("model server: the champion", f"{serving_url(settings)}/v1/models/{MODEL}"),
        ("registry documents", f"{blob_server_url(settings)}/blobs/sha256/<hex>"),
        ("event log", f"{prefix}retrain models history {MODEL}"),
        ("reports, cards, bundles", f"{prefix}retrain registry ls"),
    ]
    for what, where in places:
        line = f"  • {what + ':':<34} {where}"
        console.print(line, markup=False, highlight=False, soft_wrap=True)
