"""A gate decision as data, and the markdown model card that presents it.

The card is written when the gate decides, with the candidate's lineage (the data, spec,
contract and code it came from, its seed); ``with_release`` adds the release's final outcome
(promoted, aborted, not released) to it once the release ends, as a new card.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tasks.gate.card_cost import cost_section
from tasks.gate.card_explain import attribution_notes, attributions_section
from tasks.gate.card_sections import inputs_section, lineage_section

if TYPE_CHECKING:
    from tasks.gate.explain import Attributions

__all__ = ["Check", "GateDecision", "SliceResult", "render_model_card", "with_release"]


@dataclass(frozen=True)
class Check:
    """One gate rule's outcome: its name, whether it passed and the numbers behind it."""

    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class SliceResult:
    """The metric on one value of a slice feature; ``passed`` is None when too few rows."""

    feature: str
    value: str
    rows: int
    candidate: float
    champion: float
    difference: float
    passed: bool | None


@dataclass(frozen=True)
class GateDecision:
    """Inputs, numbers, verdict and reasons of one gate evaluation."""

    model: str
    candidate_version: int
    champion_version: int | None
    candidate_digest: str
    holdout_digest: str
    holdout_rows: int
    task: str
    metric: str
    higher_is_better: bool
    candidate_metrics: dict[str, float]
    champion_metrics: dict[str, float] | None
    difference: float | None
    ci_low: float | None
    ci_high: float | None
    confidence: float
    resamples: int
    slices: tuple[SliceResult, ...]
    latency_p95_ms: float | None
    checks: tuple[Check, ...]
    rules: dict[str, Any] = field(default_factory=dict)
    card_digest: str | None = None
    attributions: Attributions | None = None
    holdout_sampled_from: int | None = None
    """The holdout snapshot's rows where it was graded on a seeded sample of them."""

    @property
    def holdout_note(self) -> str:
        """How much of the holdout was graded, where a sample of it was (else empty)."""
        if self.holdout_sampled_from is None:
            return ""
        return (
            f"graded on {self.holdout_rows:,} of {self.holdout_sampled_from:,} holdout rows "
            "(seeded sample)"
        )

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def verdict(self) -> str:
        return "pass" if self.passed else "fail"

    @property
    def reasons(self) -> list[str]:
        """Why it failed (each failed rule), or why it passed (each rule checked)."""
        failed = [f"{c.name}: {c.detail}" for c in self.checks if not c.passed]
        if failed:
            return failed
        if not self.checks:
            return ["no rule applies: no champion and no floor or latency budget set"]
        return [f"{c.name}: {c.detail}" for c in self.checks]

    @property
    def summary(self) -> str:
        against = (
            f"against v{self.champion_version}"
            if self.champion_version is not None
            else "first model, absolute rules only"
        )
        return f"{self.model} v{self.candidate_version} {self.verdict} ({against}): " + (
            "; ".join(self.reasons)
        )

    @property
    def log_line(self) -> str:
        """The verdict with its numbers, for run logs: the gate metric of candidate, champion
        and floor, the bootstrap interval, and each rule's outcome."""
        metric = self.metric
        numbers = [f"candidate {_num(self.candidate_metrics.get(metric))}"]
        if self.champion_metrics is not None:
            numbers.append(
                f"champion v{self.champion_version} {_num(self.champion_metrics.get(metric))}"
            )
        floor = self.rules.get("floor")
        numbers.append(f"floor {'none' if floor is None else _num(floor)}")
        if self.difference is not None and self.ci_low is not None and self.ci_high is not None:
            numbers.append(
                f"difference {self.difference:+.4f}, {self.confidence:.0%} CI "
                f"[{self.ci_low:+.4f}, {self.ci_high:+.4f}]"
            )
        checks = ", ".join(f"{c.name} {'ok' if c.passed else 'FAILED'}" for c in self.checks)
        return (
            f"gate {self.verdict.upper()} for {self.model} v{self.candidate_version}: {metric} "
            + ", ".join(numbers)
            + f"; checks: {checks or 'none apply'}"
            + (f"; {self.holdout_note}" if self.holdout_note else "")
        )

    def with_card(self, digest: str) -> GateDecision:
        return dataclasses.replace(self, card_digest=digest)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record for the event log (verdict and reasons included)."""
        data = dataclasses.asdict(self)
        data["verdict"] = self.verdict
        data["reasons"] = self.reasons
        return data

    def check_rows(self) -> list[dict[str, Any]]:
        """The checks as table rows."""
        return [{"rule": c.name, "passed": c.passed, "detail": c.detail} for c in self.checks]

    def metric_rows(self) -> list[dict[str, Any]]:
        """Candidate against champion, one row per metric."""
        rows = []
        for name, value in self.candidate_metrics.items():
            champ = (self.champion_metrics or {}).get(name)
            rows.append(
                {
                    "metric": name,
                    "candidate": value,
                    "champion": champ,
                    "difference": None if champ is None else value - champ,
                }
            )
        return rows


def render_model_card(decision: GateDecision, lineage: Mapping[str, Any] | None = None) -> str:
    """Markdown model card: verdict, checks, metrics, slices, the inputs that were used and
    the candidate's ``lineage`` (its registry record's: data, spec, contract, code, seed)."""
    lines = [
        *_verdict_and_checks(decision),
        *_metrics_section(decision),
        *_bootstrap_note(decision),
        *_slices_section(decision),
        *attributions_section(decision.attributions),
        *inputs_section(decision),
        *lineage_section(lineage),
        *cost_section(lineage),
    ]
    return "\n".join(lines)


_RELEASE_MARK = "**Release: "
_RELEASE_SECTION = "## Release"


def with_release(card: str, headline: str, why: str, details: Sequence[str]) -> str:
    """``card`` with the release's outcome: ``**Release: <headline>**: <why>`` under the
    verdict and a ``## Release`` section of ``details`` (one bullet each) at the end; an
    earlier release outcome on the card is replaced, so a card shows one outcome: the last."""
    lines = _without_release(card.rstrip("\n").split("\n"))
    mark = f"{_RELEASE_MARK}{headline}**" + (f": {why}" if why else "")
    verdict = next((i for i, line in enumerate(lines) if line.startswith("**Verdict:")), None)
    if verdict is None:  # a card of another shape: the outcome goes first
        lines[0:0] = [mark, ""]
    else:
        lines[verdict + 1 : verdict + 1] = ["", mark]
    section = [_RELEASE_SECTION, "", *(f"- {d}" for d in details)]
    return "\n".join([*lines, "", *section, ""])


def _without_release(lines: list[str]) -> list[str]:
    """``lines`` less an earlier release mark (and the blank line before it) and section."""
    out: list[str] = []
    skipping = False
    for line in lines:
        if line == _RELEASE_SECTION:
            skipping = True
        elif skipping and line.startswith("## "):
            skipping = False
        if skipping:
            continue
        if line.startswith(_RELEASE_MARK):
            if out and not out[-1]:
                out.pop()
            continue
        out.append(line)
    while out and not out[-1]:
        out.pop()
    return out


def _verdict_and_checks(d: GateDecision) -> list[str]:
    against = (
        f" against champion v{d.champion_version}"
        if d.champion_version is not None
        else " (first model: judged on absolute rules only)"
    )
    return [
        f"# Model card: {d.model} v{d.candidate_version}",
        "",
        f"**Verdict: {d.verdict.upper()}**" + against,
        *attribution_notes(d.attributions),
        "",
        "## Checks",
        "",
        "| rule | passed | detail |",
        "|---|---|---|",
        *(f"| {c.name} | {'yes' if c.passed else 'no'} | {c.detail} |" for c in d.checks),
    ]


def _metrics_section(d: GateDecision) -> list[str]:
    return [
        "",
        f"## Holdout metrics ({d.holdout_rows} rows)",
        "",
        *([d.holdout_note[0].upper() + d.holdout_note[1:] + ".", ""] if d.holdout_note else []),
        "| metric | candidate | champion | difference |",
        "|---|---|---|---|",
        *(
            f"| {r['metric']} | {_num(r['candidate'])} | {_num(r['champion'])} | "
            f"{_num(r['difference'])} |"
            for r in d.metric_rows()
        ),
    ]


def _bootstrap_note(d: GateDecision) -> list[str]:
    """The comparison with the champion in one sentence; nothing for a first model."""
    if d.ci_low is None or d.ci_high is None or d.difference is None:
        return []
    direction = "higher" if d.higher_is_better else "lower"
    return [
        "",
        f"Paired bootstrap of {d.metric} ({d.resamples} resamples, {direction} is better, "
        f"sign-adjusted): difference {d.difference:+.4f}, {d.confidence:.0%} CI "
        f"[{d.ci_low:+.4f}, {d.ci_high:+.4f}].",
    ]


def _slices_section(d: GateDecision) -> list[str]:
    if not d.slices:
        return []
    return [
        "",
        "## Slices",
        "",
        "| slice | rows | candidate | champion | difference | ok |",
        "|---|---|---|---|---|---|",
        *(
            f"| {s.feature}={s.value} | {s.rows} | {_num(s.candidate)} | {_num(s.champion)} | "
            f"{_num(s.difference)} | {'-' if s.passed is None else ('yes' if s.passed else 'no')} |"
            for s in d.slices
        ),
    ]


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
