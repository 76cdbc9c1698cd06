"""What the catalog hands out: frozen, plain records (never ORM objects bound to a session)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = [
    "ALERT_ACTIONS",
    "ALERT_STATES",
    "MODEL_STATUSES",
    "AlertRecord",
    "ArtifactRecord",
    "BlobInfo",
    "BlobProblem",
    "BlobRecord",
    "DatasetRecord",
    "EventRecord",
    "GcReport",
    "ModelVersionRecord",
    "StoredBlob",
    "VerifyReport",
]

MODEL_STATUSES = ("candidate", "rejected", "champion", "retired")
ALERT_ACTIONS = ("retrain", "rollback")  # what an alert may ask for
ALERT_STATES = ("received", "submitted", "folded", "ignored", "rolled_back", "duplicate")


@dataclass(frozen=True)
class BlobRecord:
    """A blob the catalog knows: its digest, size in bytes and media type."""

    digest: str
    size: int
    media_type: str
    created_at: datetime
    store_checksum: str | None = None


@dataclass(frozen=True)
class StoredBlob:
    """The outcome of a put: the digest, the size, and whether these bytes were new to the store."""

    digest: str
    size: int
    written: bool
    store_checksum: str | None = None


@dataclass(frozen=True)
class BlobInfo:
    """A blob as the object store sees it (no catalog involved)."""

    digest: str
    size: int
    modified: datetime


@dataclass(frozen=True)
class DatasetRecord:
    """A dataset snapshot: a named table whose bytes are stored under ``digest``."""

    name: str
    digest: str
    rows: int
    schema: dict[str, str]
    created_at: datetime


@dataclass(frozen=True)
class ModelVersionRecord:
    """One registered version of a model and the bundle holding it."""

    model: str
    version: int
    bundle_digest: str
    status: str
    metrics: dict[str, float]
    lineage: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class EventRecord:
    """One entry of the append-only event log: what happened, to which versions, why, by whom."""

    id: int
    kind: str
    model: str | None
    versions: list[int]
    reason: str
    actor: str
    payload: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class ArtifactRecord:
    """A stored report or spec (validation, drift report, model card, gate decision, ...)."""

    id: int
    kind: str
    name: str
    digest: str
    meta: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class AlertRecord:
    """An alert received by the webhook, deduplicated by ``dedup_key``."""

    id: int
    dedup_key: str
    source: str
    model: str
    status: str
    payload: dict[str, Any]
    state: str
    flow_run_id: str | None
    received_at: datetime
    reason: str | None = None  # why it was folded or ignored (unknown model, resolved, ...)
    action: str = "retrain"  # what the alert asks for: retrain or rollback


@dataclass(frozen=True)
class BlobProblem:
    """A catalogued blob that is ``missing`` from the store, proven ``corrupt`` there, or whose
    reads went wrong without proving that (``unstable reads (transport?)``, ``bad reads, store
    checksum intact (transport?)``): see ``registry.verifying``."""

    digest: str
    problem: str
    detail: str = ""


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of re-hashing every catalogued blob."""

    checked: int
    bytes_checked: int
    problems: list[BlobProblem] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    quarantined: list[str] = field(default_factory=list)
    # Why the store or transport as a whole is suspect (then nothing is quarantined), or None.
    store_suspect: str | None = None

    @property
    def ok(self) -> bool:
        """True when no catalogued blob is missing or corrupt."""
        return not self.problems


@dataclass(frozen=True)
class GcReport:
    """What garbage collection found (and, unless a dry run, deleted)."""

    dry_run: bool
    scanned: int
    collected: list[BlobInfo] = field(default_factory=list)
    kept_young: int = 0
    stale_temp_files: int = 0
    # Of ``collected``: snapshots failed retrains stored that nothing else uses (catalogued
    # blobs, whose dataset and blob rows go with them; see ``registry.leftovers``).
    failed_run_snapshots: list[str] = field(default_factory=list)

    @property
    def bytes_collected(self) -> int:
        """Total size of the collected (or collectable) blobs."""
        return sum(blob.size for blob in self.collected)
