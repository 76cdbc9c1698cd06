"""Retention: snapshots and data reports older than a pipeline's ``privacy.retention_days``
go at ``retrain registry gc``, unless a live model version still needs them.

A row belongs to a pipeline by name: the pipeline's own name, or the name followed by
``-...`` (``loan-default-training``, ``loan-default-holdout``, ``loan-default-monitor``).
Expired are its dataset snapshots and its ``drift_report`` and ``validation`` artifacts
stored more than ``retention_days`` before now (the catalog's clock, so a simulation can
run weeks in a second). Kept, and said so, are those whose digest a live version's lineage
names (a candidate or champion, or a version an alias points at): its training data, its
holdout. A dry run by default, as ``gc`` is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from registry.expiry import AgedRow, aged_rows, expire_rows, live_digests
from registry.store import Registry

__all__ = ["EXPIRING_ARTIFACTS", "RetentionReport", "apply_retention", "registered_retention"]

EXPIRING_ARTIFACTS = ("drift_report", "validation")
"""Reports made of a batch's data; model cards, specs and contracts stay."""


@dataclass(frozen=True)
class RetentionReport:
    """What retention collected (or would, on a dry run) and what it kept, and why."""

    dry_run: bool
    expired: list[AgedRow] = field(default_factory=list)
    kept: dict[str, list[AgedRow]] = field(default_factory=dict)
    """Rows past retention kept because live versions need them, by those versions."""
    blobs_deleted: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """What a user reads: one line for the expired, one per set of versions keeping rows."""
        verb = "would collect" if self.dry_run else "collected"
        snapshots = sum(r.table == "dataset" for r in self.expired)
        reports = len(self.expired) - snapshots
        out = [f"retention: {verb} {snapshots} snapshot(s) and {reports} report(s) past retention"]
        if not self.dry_run:
            out[0] += f" ({len(self.blobs_deleted)} blob(s) deleted)"
        for needed_by, rows in sorted(self.kept.items()):
            kept = sum(r.table == "dataset" for r in rows)
            out.append(
                f"retention: kept {kept} snapshot(s) and {len(rows) - kept} report(s) past "
                f"retention: needed by {needed_by}"
            )
        return out


def apply_retention(
    registry: Registry,
    retention_days: Mapping[str, int],
    *,
    now: datetime | None = None,
    dry_run: bool = True,
) -> RetentionReport:
    """Expire, per pipeline in ``retention_days`` (name to days), its rows older than that,
    except those live versions need; ``now`` defaults to the catalog's clock."""
    if not retention_days:
        return RetentionReport(dry_run)
    now = now if now is not None else registry.catalog.clock()
    shortest = timedelta(days=min(retention_days.values()))
    candidates = aged_rows(registry.catalog, now - shortest, EXPIRING_ARTIFACTS)
    needed = live_digests(registry.catalog)
    expired: list[AgedRow] = []
    kept: dict[str, list[AgedRow]] = {}
    for row in candidates:
        pipeline = _pipeline_of(row.name, retention_days)
        if pipeline is None:
            continue
        days = retention_days[pipeline]
        if row.created_at >= now - timedelta(days=days):
            continue
        users = needed.get(row.digest)
        if users:
            kept.setdefault(", ".join(users), []).append(row)
        else:
            expired.append(row)
    deleted: list[str] = []
    if not dry_run and expired:
        deleted = expire_rows(registry.catalog, expired, registry.blobs.delete)
    return RetentionReport(dry_run, expired, kept, deleted)


def registered_retention(registry: Registry) -> dict[str, int]:
    """``retention_days`` of every registered pipeline that sets it, by name."""
    from retrain.config.spec_store import get_registered_spec, list_registered_pipelines

    out: dict[str, int] = {}
    for summary in list_registered_pipelines(registry):
        days = get_registered_spec(registry, summary.name).privacy.retention_days
        if days is not None:
            out[summary.name] = days
    return out


def _pipeline_of(name: str, pipelines: Mapping[str, int]) -> str | None:
    """The pipeline a row named ``name`` belongs to (the longest matching name), if any."""
    matching = [p for p in pipelines if name == p or name.startswith(f"{p}-")]
    return max(matching, key=len) if matching else None
