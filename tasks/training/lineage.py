"""Lineage facts of a training run that do not change from run to run of the same inputs."""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["code_lineage", "frame_digest", "inputs_digest"]

_ROOT = Path(__file__).resolve().parents[2]
# The code that decides what a trained model is: the model package and the training task.
_CODE_FILES = (
    "models/*.py",
    "tasks/training/fit.py",
    "tasks/training/prepare.py",
    "tasks/training/loop.py",
    "tasks/training/bundling.py",
    "tasks/training/streaming_fit.py",
    "tasks/training/background.py",
)


def frame_digest(frame: pd.DataFrame) -> str:
    """Content digest of a frame not stored as a snapshot (column names and values)."""
    h = hashlib.sha256(json.dumps(list(map(str, frame.columns))).encode())
    h.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return "sha256:" + h.hexdigest()


def inputs_digest(inputs: dict[str, Any]) -> str:
    """``sha256:<hex>`` of the canonical JSON of a run's inputs."""
    blob = json.dumps(inputs, sort_keys=True, separators=(",", ":")).encode()
    return "sha256:" + hashlib.sha256(blob).hexdigest()


@lru_cache(maxsize=1)
def code_lineage() -> dict[str, Any]:
    """Code digest (model + training sources), git commit if any, and library versions."""
    import lightning
    import numpy
    import safetensors
    import torch

    h = hashlib.sha256()
    for pattern in _CODE_FILES:
        for path in sorted(_ROOT.glob(pattern)):
            h.update(path.relative_to(_ROOT).as_posix().encode() + b"\0" + path.read_bytes())
    return {
        "code_digest": "sha256:" + h.hexdigest(),
        "git_commit": _git_commit(),
        "libraries": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "lightning": lightning.__version__,
            "numpy": numpy.__version__,
            "safetensors": safetensors.__version__,
        },
    }


def _git_commit() -> str | None:
    """The commit checked out where this code runs from, when that is a git checkout (an
    installed package may sit inside someone else's repository: its commit says nothing
    about this code); None otherwise, and never an error."""
    if not (_ROOT / ".git").exists():  # a folder, or a file in a worktree or submodule
        return None
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=_ROOT,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None
