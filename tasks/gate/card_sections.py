"""The model card's reference sections: the inputs a decision used and where the candidate
came from (``tasks.gate.model_card`` puts them together)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tasks.gate.model_card import GateDecision

__all__ = ["inputs_section", "lineage_section"]


def inputs_section(d: GateDecision) -> list[str]:
    """The bundle, holdout, metric and rules the decision was made with."""
    latency = "not measured" if d.latency_p95_ms is None else f"{d.latency_p95_ms:.2f} ms"
    return [
        "",
        "## Inputs",
        "",
        f"- bundle: `{d.candidate_digest}`",
        f"- holdout snapshot: `{d.holdout_digest}`",
        f"- gate metric: {d.metric}; latency p95: {latency}",
        f"- rules: `{_rules(d.rules)}`",
        "",
    ]


def lineage_section(lineage: Mapping[str, Any] | None) -> list[str]:
    """Where the candidate came from; "none recorded" for what its record lacks."""
    if lineage is None:
        return []

    def fact(key: str) -> str:
        value = lineage.get(key)
        return "none recorded" if value in (None, "") else f"`{value}`"

    return [
        "## Lineage",
        "",
        f"- training data: {fact('dataset_digest')}",
        f"- its holdout: {fact('holdout_digest')}",
        f"- source: {fact('source')}",
        f"- spec: {fact('spec_digest')}",
        f"- contract: {fact('contract_digest')}",
        f"- code: {fact('code_digest')}; git commit: {fact('git_commit')}",
        f"- seed: {fact('seed')}",
        "",
    ]


def _rules(rules: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(rules.items()))
