"""The running stack's address card: ``<home>/stack.json``, written by ``retrain up`` once its
services answer and removed when it stops.

Commands that talk to Prefect (``retrain pipelines register``, ``run`` and ``serve``,
``retrain alerts serve``) read it to find the stack's API when ``PREFECT_API_URL`` is not set,
so nobody has to export anything. A card whose process no longer runs (a stack killed with
SIGKILL, a reboot) is ignored, and so is one that cannot be read.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path

__all__ = ["STATE_FILE", "StackState", "pid_alive", "published", "read_live_state", "state_path"]

STATE_FILE = "stack.json"


@dataclass(frozen=True)
class StackState:
    """What a client needs to reach the stack: its pid and each service's URL (``None`` for
    a service that is not running: not asked for, or degraded)."""

    pid: int
    home: str
    prefect_api_url: str
    prefect_ui_url: str
    model_server_url: str | None = None
    alert_receiver_url: str | None = None
    blob_server_url: str | None = None
    mlflow_url: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> StackState:
        """Parse a card; ``ValueError`` when it is not one (wrong JSON, missing fields)."""
        document = json.loads(text)
        if not isinstance(document, dict):
            raise ValueError("not a JSON object")
        known = {f.name for f in fields(cls)}
        try:
            state = cls(**{k: v for k, v in document.items() if k in known})
        except TypeError as exc:
            raise ValueError(str(exc)) from None
        if not isinstance(state.pid, int) or not isinstance(state.prefect_api_url, str):
            raise ValueError("pid or prefect_api_url has the wrong type")
        return state


def state_path(home: Path) -> Path:
    """Where the card of the stack on ``home`` lives."""
    return home / STATE_FILE


def pid_alive(pid: int) -> bool:
    """True when process ``pid`` exists (signal 0 checks without sending anything)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


def read_live_state(home: Path) -> StackState | None:
    """The card of the stack running on ``home``; ``None`` when there is none, it cannot be
    read, or its process is gone (a stale card)."""
    try:
        state = StackState.from_json(state_path(home).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return state if pid_alive(state.pid) else None


def _write(home: Path, state: StackState) -> None:
    """Write the card whole or not at all: a reader never sees half of it."""
    home.mkdir(parents=True, exist_ok=True)
    temp = home / f".{STATE_FILE}.{os.getpid()}.tmp"
    temp.write_text(state.to_json(), encoding="utf-8")
    os.replace(temp, state_path(home))


def _remove(home: Path, pid: int) -> None:
    """Remove the card if it is still ours (a newer stack's card is left alone)."""
    path = state_path(home)
    try:
        current = StackState.from_json(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return
    if current.pid == pid:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@contextlib.contextmanager
def published(home: Path, state: StackState) -> Iterator[StackState]:
    """Keep ``state`` in ``home/stack.json`` while inside; removed on the way out, however
    the block ends."""
    _write(home, state)
    try:
        yield state
    finally:
        _remove(home, state.pid)
