"""The model card's ``## Cost`` section: what the retrain that made the candidate cost.

It reads the version's lineage (``cost``: the stages measured so far, recorded by
``tasks.pipeline.costs``; ``training_budget``: where a budget stopped the fit). The gate writes
the card before its own cost and the canary's are known, so the section lists the stages up to
training; the release's new card (``with_cost``) refreshes it with the gate's. Every stage of
the run, the canary's included, is in ``retrain models show``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tasks.reporting.cost_table import cost_rows, markdown_table

__all__ = ["cost_section", "with_cost"]

_SECTION = "## Cost"


def cost_section(lineage: Mapping[str, Any] | None) -> list[str]:
    """The section's lines (none when the lineage records no cost)."""
    lineage = lineage or {}
    costs = lineage.get("cost")
    budget = lineage.get("training_budget")
    stopped = budget.get("stopped") if isinstance(budget, Mapping) else None
    if not isinstance(costs, Mapping) or not costs:
        return [_SECTION, "", f"- {stopped}", ""] if stopped else []
    lines = [_SECTION, "", markdown_table(cost_rows(costs)), ""]
    if stopped:
        lines += [f"- {stopped}"]
    missing = [s for s in ("gate", "canary") if s not in costs]
    if missing:
        lines += [f"- {' and '.join(missing)}: measured after this card; see `retrain models show`"]
    return [*lines, ""] if lines[-1] else lines


def with_cost(card: str, lineage: Mapping[str, Any] | None) -> str:
    """``card`` with its cost section replaced by the one ``lineage`` gives now (appended where
    the card has none)."""
    section = cost_section(lineage)
    if not section:
        return card
    lines = card.rstrip("\n").split("\n")
    if _SECTION not in lines:
        return "\n".join([*lines, "", *section])
    start = lines.index(_SECTION)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    return "\n".join([*lines[:start], *section, *lines[end:]]) + "\n"
