"""A run's cost per stage as table rows and as markdown, from its JSON (``lineage["cost"]``).

One renderer for the Prefect table artifact, the model card, the run's log and ``retrain
models show``, so each shows the same columns: stage, wall s, CPU s, peak RSS MB, GPU s, GPU
peak MB, and a total row (times summed, memory peaks the largest).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["COLUMNS", "cost_rows", "markdown_table"]

COLUMNS = ("stage", "wall s", "CPU s", "peak RSS MB", "GPU s", "GPU peak MB")


def cost_rows(costs: Mapping[str, Any] | None) -> list[dict[str, str]]:
    """One row per stage of ``{stage: measures}``, then a total when there are several."""
    stages = {str(k): v for k, v in (costs or {}).items() if isinstance(v, Mapping)}
    rows = [_row(name, values) for name, values in stages.items()]
    if len(rows) > 1:
        values = list(stages.values())
        peaks = [float(v["gpu_peak_mb"]) for v in values if v.get("gpu_peak_mb") is not None]
        total = {
            "wall_s": sum(_num(v, "wall_s") for v in values),
            "cpu_s": sum(_num(v, "cpu_s") for v in values),
            "peak_rss_mb": max(_num(v, "peak_rss_mb") for v in values),
            "gpu_s": sum(_num(v, "gpu_s") for v in values),
            "gpu_peak_mb": max(peaks) if peaks else None,
        }
        rows.append(_row("total", total))
    return rows


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """``rows`` as a markdown table (empty string without rows)."""
    if not rows:
        return ""
    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(row.get(h, "")) for h in head) + " |" for row in rows]
    return "\n".join(lines)


def _row(stage: str, values: Mapping[str, Any]) -> dict[str, str]:
    gpu_peak = values.get("gpu_peak_mb")
    cells = (
        stage,
        f"{_num(values, 'wall_s'):.2f}",
        f"{_num(values, 'cpu_s'):.2f}",
        f"{_num(values, 'peak_rss_mb'):.0f}",
        f"{_num(values, 'gpu_s'):.2f}",
        "-" if gpu_peak is None else f"{float(gpu_peak):.0f}",
    )
    return dict(zip(COLUMNS, cells, strict=True))


def _num(values: Mapping[str, Any], key: str) -> float:
    value = values.get(key)
    return float(value) if isinstance(value, int | float) else 0.0
