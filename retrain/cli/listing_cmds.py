"""``retrain registry ls``: every catalogued blob and what it is (bundle, snapshot, holdout,
report, model card, spec, contract), of which model and version, filterable by both.

What a blob is comes from the catalog rows that name it: a model version's bundle or lineage,
a dataset row, an artifact (reports, cards, specs, contracts, the champion's holdout). A blob
no row explains (``retrain registry put``) is ``other``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import typer

from registry.errors import ConfigError, NotFoundError, RetrainError
from retrain.cli.app import registry_app
from retrain.cli.common import open_registry
from retrain.cli.digests import short_digest
from retrain.cli.registry_cmds import human_size
from retrain.terminal import console, render_table

if TYPE_CHECKING:
    from registry.store import Registry

__all__ = ["KINDS", "BlobUse", "blob_uses"]

KINDS = (
    "bundle",
    "snapshot",
    "holdout",
    "validation",
    "drift-report",
    "model-card",
    "gate-decision",
    "spec",
    "contract",
    "other",
)
# Artifact kinds as the catalog stores them -> as a user names them.
_ARTIFACTS = {
    "model_card": "model-card",
    "drift_report": "drift-report",
    "gate_decision": "gate-decision",
    "validation": "validation",
    "pipeline_spec": "spec",
    "holdout": "holdout",
    "contract": "contract",
}
_PARQUET = "application/vnd.apache.parquet"
_WEIGHTS = "application/vnd.retrain.safetensors"  # models.bundle's (importing it loads torch)
_COLUMNS = ["digest", "kind", "model", "version", "size", "media type", "stored"]


@dataclass(frozen=True)
class BlobUse:
    """One thing a blob is: its kind, and the model and version it belongs to when known."""

    kind: str
    model: str | None = None
    version: int | None = None


def blob_uses(registry: Registry) -> dict[str, list[BlobUse]]:
    """Digest -> what each catalog row that names it says the blob is."""
    catalog = registry.catalog
    models = set(catalog.list_models())
    artifacts = catalog.artifacts()
    # A pipeline's name is its model's, versions or not.
    names = models | {a.name for a in artifacts if a.kind == "pipeline_spec"}
    uses: dict[str, list[BlobUse]] = {}

    def add(digest: Any, use: BlobUse) -> None:
        if isinstance(digest, str) and digest and use not in uses.get(digest, []):
            uses.setdefault(digest, []).append(use)

    versions = [record for name in sorted(models) for record in catalog.list_model_versions(name)]
    for record in versions:
        model, version, lineage = record.model, record.version, record.lineage
        add(record.bundle_digest, BlobUse("bundle", model, version))
        add(lineage.get("dataset_digest"), BlobUse("snapshot", model, version))
        add(lineage.get("holdout_digest"), BlobUse("holdout", model, version))
        add(lineage.get("contract_digest"), BlobUse("contract", model))
    for artifact in artifacts:
        kind = _ARTIFACTS.get(artifact.kind, artifact.kind.replace("_", "-"))
        named, number = artifact.meta.get("model"), artifact.meta.get("version")
        owner = str(named) if named else _model_of(artifact.name, names)
        add(artifact.digest, BlobUse(kind, owner, number if isinstance(number, int) else None))
    blobs = catalog.list_blobs()
    if any(b.media_type == _WEIGHTS and b.digest not in uses for b in blobs):
        for record in versions:  # a bundle's weights are named by its manifest only
            weights = _weights_of(registry, record.bundle_digest)
            add(weights, BlobUse("bundle", record.model, record.version))
    for blob in blobs:
        if blob.media_type == _PARQUET and blob.digest not in uses:
            add(blob.digest, _snapshot_use(registry, blob.digest, names))
    return uses


def _weights_of(registry: Registry, bundle_digest: str) -> str | None:
    """The weights blob a bundle's manifest names (None when it cannot be read)."""
    try:
        manifest = json.loads(registry.get_bytes(bundle_digest))
        return str(manifest["weights"]["digest"])
    except (RetrainError, ValueError, KeyError, TypeError):
        return None


def _snapshot_use(registry: Registry, digest: str, models: set[str]) -> BlobUse:
    """A snapshot no version uses (a failed run's, a user's): named by its dataset row."""
    try:
        name = registry.catalog.get_dataset(digest).name
    except NotFoundError:
        return BlobUse("other")
    kind = "holdout" if name.endswith("-holdout") else "snapshot"
    return BlobUse(kind, _model_of(name, models))


def _model_of(name: str, models: set[str]) -> str | None:
    """The model an artifact or dataset name belongs to (``loans``, ``loans-v3``,
    ``loans-holdout``, ``loans-monitor``), when one is registered."""
    if name in models:
        return name
    for suffix in ("-training", "-holdout", "-monitor"):
        if name.endswith(suffix) and name.removesuffix(suffix) in models:
            return name.removesuffix(suffix)
    head, _, tail = name.rpartition("-v")
    return head if tail.isdigit() and head in models else None


def _kind_option(kind: str | None) -> str | None:
    if kind is None:
        return None
    wanted = kind.strip().lower().replace("_", "-").replace(" ", "-")
    if wanted not in KINDS:
        raise ConfigError(f"--kind {kind!r} is not a kind: use one of {', '.join(KINDS)}")
    return wanted


@registry_app.command("ls")
def ls(
    kind: Annotated[
        str | None, typer.Option(help=f"Only blobs of this kind ({', '.join(KINDS)}).")
    ] = None,
    model: Annotated[str | None, typer.Option(help="Only blobs of this model.")] = None,
    wide: Annotated[bool, typer.Option("--wide", help="Show full digests.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (full digests).")] = False,
) -> None:
    """List the catalogued blobs: what each is, of which model and version."""
    wanted = _kind_option(kind)
    with open_registry() as reg:
        uses = blob_uses(reg)
        owners = {use.model for found in uses.values() for use in found}
        if model is not None and model not in owners | set(reg.catalog.list_models()):
            raise ConfigError(f"no model named {model!r}: see `retrain models ls`")
        rows: list[dict[str, Any]] = []
        for blob in reg.catalog.list_blobs():
            found = uses.get(blob.digest) or [BlobUse("other")]
            kinds = list(dict.fromkeys(use.kind for use in found))
            if wanted is not None and wanted not in kinds:
                continue
            if model is not None and all(use.model != model for use in found):
                continue
            owner = next((use for use in found if use.model is not None), found[0])
            rows.append(
                {
                    "digest": blob.digest,
                    "kind": ", ".join(kinds),
                    "model": owner.model,
                    "version": next((u.version for u in found if u.version is not None), None),
                    "size": blob.size,
                    "media type": blob.media_type,
                    "stored": blob.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                }
            )
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        row["size"] = human_size(row["size"])
        row["digest"] = row["digest"] if wide else short_digest(row["digest"])
    table = render_table(f"blobs ({len(rows)})", rows, _COLUMNS)
    table.columns[0].no_wrap = True  # a digest is copied whole, never folded or cut
    console.print(table)
