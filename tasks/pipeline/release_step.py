"""The release step, written once: run the spec's release mode on a candidate that passed its
gate, then record the final outcome where people look.

The modes (``tasks.release.policy.ReleasePolicy``): ``canary`` steps live traffic,
``shadow`` scores mirrored traffic for a number of windows, ``gate`` promotes at once. Every
release ends ``promoted``, ``aborted``, ``rolled_back`` or ``not_released``; that outcome
goes to the event log (``release.outcome``, which `retrain models history` lists) and onto
the model card: the gate wrote the card before the release, so a new card with the outcome is
stored under the same name (the newest is the card) and published to Prefect. The retrain
flow, `retrain release` and `retrain canary` all release through ``release_candidate``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from registry.errors import ConfigError
from registry.release import CHAMPION_ALIAS
from tasks.gate.card_cost import with_cost
from tasks.gate.model_card import with_release
from tasks.release.canary import promote_at_gate, run_canary
from tasks.release.policy import CanaryOutcome, CanaryPolicy, ReleasePolicy, StepRecord
from tasks.reporting.artifacts import artifact_key, publish_markdown

if TYPE_CHECKING:
    from registry.catalog import Catalog
    from registry.store import Registry
    from tasks.release.metric_sources import MetricsSource
    from tasks.release.preflight import ServerProbe

__all__ = [
    "OUTCOME_EVENT",
    "check_releasable",
    "describe_outcome",
    "final_outcomes",
    "record_release",
    "release_candidate",
]

OUTCOME_EVENT = "release.outcome"
_GATE_REASON = "the gate passed and the release mode is gate (no canary)"
_MODES = {
    "canary": "canary: live traffic in steps, analysed at each",
    "shadow": "shadow: the candidate scored mirrored traffic; the champion answered",
    "gate": "gate: promoted when the gate passed, no model server involved",
}


def release_candidate(
    registry: Registry,
    model: str,
    version: int,
    release: ReleasePolicy,
    canary: CanaryPolicy,
    metrics: MetricsSource,
    *,
    server: ServerProbe | None = None,
    actor: str = "release",
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    on_step: Callable[[StepRecord], None] | None = None,
) -> CanaryOutcome:
    """Release ``model`` v``version`` the way ``release`` says and record how it ended.

    ``server`` is the model server the canary checks before its first step (None: no check,
    e.g. scripted metrics in tests); the rest is ``tasks.release.canary.run_canary``'s.
    """
    if release.mode == "gate":
        outcome = promote_at_gate(registry, model, version, reason=_GATE_REASON, actor=actor)
    else:
        outcome = run_canary(
            registry,
            model,
            version,
            release.canary_policy(canary),
            metrics,
            actor=actor,
            sleep=sleep,
            clock=clock,
            on_step=on_step,
            server=server,
            mode=release.mode,
        )
    record_release(registry, outcome, actor=actor)
    return outcome


def describe_outcome(outcome: CanaryOutcome) -> str:
    """The outcome in a few words: ``promoted via shadow``, ``not released`` ..."""
    mode = outcome.mode
    return {
        "promoted": f"promoted via {mode}",
        "aborted": f"aborted ({mode})",
        "rolled_back": f"rolled back after promotion ({mode})",
        "not_released": "not released",
    }[outcome.status]


def record_release(registry: Registry, outcome: CanaryOutcome, *, actor: str) -> str:
    """Put ``outcome`` on the candidate's model card (a new card, published to Prefect) and in
    the event log; returns the new card's digest."""
    catalog = registry.catalog
    line = f"{describe_outcome(outcome)}: {outcome.reason}"
    card_name = f"{outcome.model}-v{outcome.version}"
    earlier = catalog.latest_artifact("model_card", card_name)
    card = (
        registry.get_bytes(earlier.digest).decode()
        if earlier is not None
        else f"# Model card: {outcome.model} v{outcome.version}\n\nNo gate card was recorded.\n"
    )
    champion = catalog.get_alias(outcome.model, CHAMPION_ALIAS)
    details = [
        f"outcome: {describe_outcome(outcome)}",
        f"why: {outcome.reason}",
        f"mode: {_MODES.get(outcome.mode, outcome.mode)}",
        f"analysis windows: {len(outcome.steps)}",
        f"champion before: {_version(outcome.previous_champion)}; after: {_version(champion)}",
    ]
    headline = describe_outcome(outcome).upper()
    card = with_cost(card, catalog.get_model_version(outcome.model, outcome.version).lineage)
    card = with_release(card, headline, outcome.reason, details)
    digest = registry.put_bytes(card.encode(), media_type="text/markdown")
    meta = {**(earlier.meta if earlier else {}), "outcome": outcome.status, "mode": outcome.mode}
    catalog.register_artifact("model_card", card_name, digest, meta=meta)
    catalog.append_event(
        OUTCOME_EVENT,
        model=outcome.model,
        versions=[v for v in (outcome.version, outcome.previous_champion) if v is not None],
        reason=line,
        actor=actor,
        payload={
            "version": outcome.version,
            "outcome": outcome.status,
            "mode": outcome.mode,
            "windows": len(outcome.steps),
            "champion": champion,
            "card_digest": digest,
        },
    )
    publish_markdown(artifact_key("model-card", outcome.model), card, description=line)
    return digest


def final_outcomes(catalog: Catalog, model: str, *, last: int = 10) -> list[str]:
    """One line per version (the ``last`` newest) saying how it ended: the release outcome,
    a gate rejection, or a gate pass still waiting for a release."""
    lines: dict[int, str] = {}
    for event in catalog.events(model, kinds=["gate.decision", OUTCOME_EVENT]):
        if event.kind == OUTCOME_EVENT:
            version = int(event.payload["version"])
            lines[version] = f"v{version} {event.reason}"
            continue
        version = int(event.payload["candidate_version"])
        if event.payload.get("verdict") == "fail":
            reasons = "; ".join(event.payload.get("reasons") or [])
            lines[version] = f"v{version} rejected at the gate: {reasons}"
        elif version not in lines:
            lines[version] = (
                f"v{version} passed the gate; no release recorded "
                f"(`retrain release {model} {version}` releases it)"
            )
    return [lines[v] for v in sorted(lines)[-last:]]


def check_releasable(catalog: Catalog, model: str, version: int) -> None:
    """Refuse, in one line, to release a version that is not a candidate whose gate passed
    against the current champion (ConfigError; NotFoundError for a missing version)."""
    status = catalog.get_model_version(model, version).status
    if status != "candidate":
        raise ConfigError(
            f"{model} v{version} is {status}: only a candidate that passed its gate is released"
        )
    decisions = [
        e.payload
        for e in catalog.events(model, kinds=["gate.decision"])
        if e.payload.get("candidate_version") == version
    ]
    grade = f"grade it with `retrain evaluate {model}:{version}`"
    if not decisions:
        raise ConfigError(f"{model} v{version} has no gate decision: {grade} first")
    decision = decisions[-1]
    if decision.get("verdict") != "pass":
        raise ConfigError(f"{model} v{version} failed its gate: it is not released")
    champion = catalog.get_alias(model, CHAMPION_ALIAS)
    graded = decision.get("champion_version")
    if champion is not None and graded != champion:
        raise ConfigError(
            f"{model} v{version} was graded against {_version(graded)}, but the champion is "
            f"now v{champion}: {grade} again"
        )


def _version(version: int | None) -> str:
    return "none" if version is None else f"v{version}"
