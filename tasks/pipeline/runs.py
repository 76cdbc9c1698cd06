"""What a pipeline remembers between runs: its reference data and its results.

All of it lives in the registry (artifacts and the event log), so any process — a scheduled
run, an alert-triggered run, the CLI — sees the same state.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

from registry.release import CHAMPION_ALIAS
from tasks.training.lineage import inputs_digest

if TYPE_CHECKING:
    from registry.store import Registry
    from tasks.data.drift_result import DriftResult
    from tasks.data.snapshots import Snapshot
    from tasks.gate.model_card import GateDecision
    from tasks.release.policy import CanaryOutcome
    from tasks.training.fit import TrainResult

__all__ = [
    "RetrainSummary",
    "champion_reference",
    "find_completed_run",
    "record_run",
    "run_key",
    "summarize_run",
]

_COMPLETED = "retrain.completed"


def run_key(dataset_digest: str, spec_digest: str, code_digest: str) -> str:
    """The identity of a retrain: same data, same spec, same code ⇒ same result."""
    return inputs_digest({"dataset": dataset_digest, "spec": spec_digest, "code": code_digest})


def find_completed_run(registry: Registry, model: str, key: str) -> RetrainSummary | None:
    """The summary of an earlier run with ``key`` that finished (any verdict), if any."""
    for event in reversed(registry.catalog.events(model, kinds=[_COMPLETED])):
        if event.payload.get("run_key") == key:
            return RetrainSummary.from_dict(dict(event.payload))
    return None


def record_run(
    registry: Registry, model: str, key: str, summary: RetrainSummary, *, actor: str
) -> None:
    """Append the run's summary to the event log so a rerun with the same inputs reuses it."""
    versions = [summary.candidate_version] if summary.candidate_version is not None else []
    registry.catalog.append_event(
        _COMPLETED,
        model=model,
        versions=versions,
        reason=summary.outcome,
        actor=actor,
        payload={**summary.to_dict(), "run_key": key},
    )


def champion_reference(registry: Registry, model: str) -> tuple[int, str] | None:
    """(champion version, digest of the data it was trained on), or None without a champion."""
    version = registry.catalog.get_alias(model, CHAMPION_ALIAS)
    if version is None:
        return None
    lineage = registry.catalog.get_model_version(model, version).lineage
    digest = lineage.get("dataset_digest")
    return (version, str(digest)) if digest else None


@dataclass(frozen=True)
class RetrainSummary:
    """One flat record of a retrain: what came in, what the gates said, who serves now.

    ``outcome`` is how the run ended: ``promoted``, ``aborted``, ``rolled_back`` (promoted,
    then undone by the watch), ``not_released`` (the release could not run; the candidate
    stays a candidate), ``rejected_at_gate``, ``reused`` (same inputs as an earlier run, whose
    result this is) or ``skipped`` (folded into a recent retrain). ``release`` is the release's
    own status and ``release_mode`` how it ran (canary, shadow, gate).
    """

    model: str
    trigger: str
    outcome: str
    dataset_digest: str | None = None
    rows: int | None = None
    drift_share: float | None = None
    drifted: bool | None = None
    candidate_version: int | None = None
    gate: str | None = None
    gate_reasons: tuple[str, ...] = ()
    release: str = "not_released"
    release_reason: str = ""
    release_mode: str | None = None
    champion: int | None = None
    duration_s: float = 0.0
    reused: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types, as stored in the event log and shown in tables."""
        data = asdict(self)
        data["gate_reasons"] = list(self.gate_reasons)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RetrainSummary:
        """Read back a stored summary (unknown keys, such as ``run_key``, are dropped)."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["gate_reasons"] = tuple(values.get("gate_reasons") or ())
        return cls(**values)


def summarize_run(
    registry: Registry,
    model: str,
    trigger: str,
    snapshot: Snapshot,
    drift: DriftResult | None,
    candidate: TrainResult,
    decision: GateDecision,
    release: CanaryOutcome | None,
    started: float,
) -> RetrainSummary:
    """The summary of a retrain that trained and gated a candidate."""
    outcome = "rejected_at_gate" if release is None else release.status
    return RetrainSummary(
        model=model,
        trigger=trigger,
        outcome=outcome,
        dataset_digest=snapshot.digest,
        rows=snapshot.rows,
        drift_share=None if drift is None else drift.drifted_share,
        drifted=None if drift is None else drift.drifted,
        candidate_version=candidate.version,
        gate=decision.verdict,
        gate_reasons=tuple(decision.reasons),
        release="not_released" if release is None else release.status,
        release_reason="the gate rejected the candidate" if release is None else release.reason,
        release_mode=None if release is None else release.mode,
        champion=registry.catalog.get_alias(model, "champion"),
        duration_s=round(time.monotonic() - started, 2),
    )
