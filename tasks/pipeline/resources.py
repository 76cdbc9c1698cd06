"""What each stage of a retrain cost: wall time, CPU time, peak memory, GPU time and memory.

``measure(stage)`` is a context manager that fills a ``StageCost`` when the stage ends:

- ``wall_s``: monotonic wall time of the stage.
- ``cpu_s``: CPU time (user + system) of this process, every thread included, plus that of
  child processes the stage waited for (``resource.getrusage`` ``RUSAGE_SELF`` and
  ``RUSAGE_CHILDREN`` deltas). A child still running when the stage ends is not counted, and
  neither is CPU other threads of the process spent meanwhile on something else.
- ``peak_rss_mb``: the process's peak resident memory during the stage. On Linux the kernel's
  high-water mark (``VmHWM``) is reset at the start by writing ``5`` to
  ``/proc/self/clear_refs`` and read at the end: exact, and nothing runs meanwhile. Where that
  file cannot be written (another OS, a locked-down ``/proc``) a thread samples the resident
  size every 20 ms (``/proc/self/statm``), which can miss a spike shorter than that; without
  ``/proc`` at all it is the peak of the whole process so far (``ru_maxrss``).
  ``rss_source`` says which (``hwm``, ``sampled``, ``lifetime``).
- ``gpu_s``: the stage's wall time when it allocated CUDA memory, else 0; ``gpu_peak_mb`` the
  peak CUDA memory allocated during it (``torch.cuda.max_memory_allocated`` after
  ``reset_peak_memory_stats``). Both are read only when torch is already imported and CUDA is
  initialised: torch is never imported for this. ``gpu_peak_mb`` is None on a CPU.

Stages of one process measured at once share the high-water mark: measure them one after
another (as a retrain runs them), not nested.

``RunCosts`` keeps the stages of one run in order, as JSON (``to_dict``) and as a markdown
table (``markdown``).
"""

from __future__ import annotations

import resource
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from tasks.reporting.cost_table import cost_rows, markdown_table

__all__ = ["STAGES", "RunCosts", "StageCost", "measure"]

STAGES = ("validate", "drift", "train", "gate", "canary")
"""The stages a retrain measures, in the order they run."""

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATM = Path("/proc/self/statm")
_SAMPLE_S = 0.02
_MB = 1024 * 1024


@dataclass
class StageCost:
    """One stage's measures (filled when the stage ends; zero until then)."""

    stage: str
    wall_s: float = 0.0
    cpu_s: float = 0.0
    peak_rss_mb: float = 0.0
    gpu_s: float = 0.0
    gpu_peak_mb: float | None = None
    rss_source: str = "hwm"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types, rounded for people (ms for times, 0.1 MB for memory)."""
        data = asdict(self)
        for key in ("wall_s", "cpu_s", "gpu_s"):
            data[key] = round(float(data[key]), 3)
        data["peak_rss_mb"] = round(self.peak_rss_mb, 1)
        if self.gpu_peak_mb is not None:
            data["gpu_peak_mb"] = round(self.gpu_peak_mb, 1)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StageCost:
        """Read back ``to_dict``'s output (unknown keys are ignored)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@contextmanager
def measure(stage: str) -> Iterator[StageCost]:
    """Measure the body as ``stage``; the yielded ``StageCost`` is filled when it ends (also
    when it raises)."""
    cost = StageCost(stage)
    gpu = _GpuWindow()
    memory = _PeakMemory()
    wall, cpu = time.monotonic(), _cpu_seconds()
    try:
        yield cost
    finally:
        cost.cpu_s = max(0.0, _cpu_seconds() - cpu)
        cost.wall_s = max(0.0, time.monotonic() - wall)
        cost.peak_rss_mb, cost.rss_source = memory.finish()
        used, cost.gpu_peak_mb = gpu.finish()
        cost.gpu_s = cost.wall_s if used else 0.0


class RunCosts:
    """The measured stages of one run, in the order they ran (a rerun of a stage replaces it)."""

    def __init__(self, stages: Mapping[str, StageCost] | None = None) -> None:
        self.stages: dict[str, StageCost] = dict(stages or {})

    @contextmanager
    def measure(self, stage: str) -> Iterator[StageCost]:
        """``measure(stage)``, kept here once it ends."""
        with measure(stage) as cost:
            try:
                yield cost
            finally:
                self.stages.pop(stage, None)
                self.stages[stage] = cost

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """``{stage: measures}`` in plain JSON types, as stored in a version's lineage."""
        return {name: cost.to_dict() for name, cost in self.stages.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> RunCosts:
        """Read back ``to_dict``'s output (anything else gives no stages)."""
        stages = {
            str(name): StageCost.from_dict({**values, "stage": name})
            for name, values in (data or {}).items()
            if isinstance(values, Mapping)
        }
        return cls(stages)

    def metrics(self) -> dict[str, float]:
        """``cost.<stage>.<measure>`` numbers, as logged to MLflow."""
        out: dict[str, float] = {}
        for name, cost in self.stages.items():
            for key, value in cost.to_dict().items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    out[f"cost.{name}.{key}"] = float(value)
        return out

    def rows(self) -> list[dict[str, str]]:
        """One row per stage and a total (``tasks.reporting.cost_table``)."""
        return cost_rows(self.to_dict())

    def markdown(self) -> str:
        """The stages as a markdown table (empty string without stages)."""
        return markdown_table(self.rows())


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class _PeakMemory:
    """The process's peak resident memory from now until ``finish`` (see the module doc)."""

    def __init__(self) -> None:
        self._peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.source = "hwm" if _reset_high_water_mark() else "sampled"
        if self.source == "sampled":
            if _current_rss() is None:
                self.source = "lifetime"
                return
            self._thread = threading.Thread(target=self._sample, name="peak-rss", daemon=True)
            self._thread.start()

    def _sample(self) -> None:
        while True:
            self._peak = max(self._peak, _current_rss() or 0)
            if self._stop.wait(_SAMPLE_S):
                return

    def finish(self) -> tuple[float, str]:
        """(peak resident MB, how it was measured)."""
        if self.source == "hwm":
            return (_status_kb("VmHWM") or 0) * 1024 / _MB, self.source
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            return max(self._peak, _current_rss() or 0) / _MB, self.source
        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak_kb * (1 if sys.platform == "darwin" else 1024) / _MB, self.source


def _reset_high_water_mark() -> bool:
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return _status_kb("VmHWM") is not None


def _status_kb(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _current_rss() -> int | None:
    try:
        pages = int(_STATM.read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * resource.getpagesize()


class _GpuWindow:
    """Whether the stage allocated CUDA memory, and its peak; only if torch is loaded."""

    def __init__(self) -> None:
        self._allocations: int | None = None
        cuda = _cuda()
        if cuda is not None:
            cuda.reset_peak_memory_stats()
            self._allocations = _allocations(cuda)

    def finish(self) -> tuple[bool, float | None]:
        """(used a CUDA device, peak MB allocated; None without CUDA)."""
        cuda = _cuda()
        if cuda is None:
            return False, None
        allocations = _allocations(cuda)
        # CUDA first initialised during the stage: the stage used it.
        used = self._allocations is None or allocations > self._allocations
        return used, float(cuda.max_memory_allocated()) / _MB


def _cuda() -> Any:
    """``torch.cuda`` when torch is imported and CUDA initialised, else None."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    try:
        cuda = torch.cuda
        return cuda if cuda.is_available() and cuda.is_initialized() else None
    except (AttributeError, RuntimeError):
        return None


def _allocations(cuda: Any) -> int:
    try:
        return int(cuda.memory_stats().get("allocation.all.allocated", 0))
    except (AttributeError, RuntimeError):
        return 0
