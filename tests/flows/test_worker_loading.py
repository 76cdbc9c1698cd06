"""Flows loaded the way a worker loads them: by path, with Prefect's loader, in a fresh process.

Prefect puts a flow file's folder first on ``sys.path``; a flow module named like one of our
packages (``flows/retrain.py`` once shadowed ``retrain``) then breaks every later import of it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
FLOW_FILES = sorted(p for p in (ROOT / "flows").glob("*.py") if p.name != "__init__.py")
_NOT_FLOWS = {"context", "hooks"}  # what the flows share: their setup, their crash hooks

_WORKER = """
import sys
from prefect.flows import load_flow_from_entrypoint

for entrypoint in sys.argv[1:]:
    flow = load_flow_from_entrypoint(entrypoint)
    print("loaded", entrypoint, flow.name)
# A worker loads every flow before it runs one: no ML library comes with them.
print("heavy at load:", [m for m in ("torch", "lightning", "evidently") if m in sys.modules])
# What the flows import at run time, after the loader has changed sys.path:
from retrain.config.settings import Settings
from retrain.config.spec_store import get_registered_spec
from retrain.config.wiring import build_registry
import retrain.cli, retrain.deployments, retrain.alerts.receiver
print("front door importable", Settings.__name__)
"""


def test_every_deployment_loads_in_a_fresh_process_and_the_front_door_still_imports() -> None:
    deployments = yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]
    entrypoints = sorted({d["entrypoint"] for d in deployments})
    assert {e.split(":")[0] for e in entrypoints} == {
        f"flows/{p.name}" for p in FLOW_FILES if p.stem not in _NOT_FLOWS
    }
    done = subprocess.run(
        [sys.executable, "-c", _WORKER, *entrypoints],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("loaded ") == len(entrypoints)
    assert "front door importable Settings" in done.stdout
    assert "heavy at load: []" in done.stdout  # torch and friends load when a step runs


def test_no_flow_module_is_named_like_an_importable_module() -> None:
    """With ``flows/`` first on sys.path, a flow file must not hide a package or a stdlib
    module of the same name."""
    stems = [p.stem for p in FLOW_FILES]
    clash = [s for s in stems if s in sys.stdlib_module_names]
    assert not clash, f"flows/ files named like stdlib modules: {clash}"
    probe = (
        "import importlib.util, sys\n"
        "hits = [n for n in sys.argv[1:] if importlib.util.find_spec(n) is not None]\n"
        "print(','.join(hits))\n"
    )
    # From a folder outside the project: what is importable in the environment itself.
    found = subprocess.run(
        [sys.executable, "-c", probe, *stems],
        cwd=ROOT.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == "", f"flows/ files shadow importable modules: {found.stdout}"
