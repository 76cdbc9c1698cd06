"""CLI commands for the content-addressed store (``retrain registry``) and models (``models``)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, BinaryIO, cast

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from registry.errors import ConfigError
from registry.records import VerifyReport
from registry.verifying import CORRUPT, STORE_INTACT, UNSTABLE
from retrain.cli.app import models_app, registry_app
from retrain.cli.common import open_registry
from retrain.terminal import console, err_console, render_table

__all__ = ["human_size", "parse_duration"]

_DURATION = re.compile(r"(?P<value>\d+(?:\.\d+)?)\s*(?P<unit>[smhdw]?)")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_MAX_DURATION_DAYS = 36500  # 100 years: longer is "never" for a grace period, and overflows


def parse_duration(text: str) -> timedelta:
    """``90``, ``30s``, ``15m``, ``24h``, ``7d`` or ``2w`` as a timedelta (at most 100 years)."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        raise ConfigError(f"{text!r} is not a duration: use e.g. 30s, 15m, 24h or 7d")
    seconds = float(match["value"]) * _UNIT_SECONDS[match["unit"]]
    if seconds > _MAX_DURATION_DAYS * 86400:
        raise ConfigError(
            f"{text!r} is too long a duration: use at most {_MAX_DURATION_DAYS}d (100 years)"
        )
    return timedelta(seconds=seconds)


def human_size(n: int) -> str:
    """A byte count as people read it: ``512 B``, ``3.2 KiB``, ``1.5 GiB``."""
    value = float(n)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


class _CountingReader:
    """A file wrapper that reports how many bytes have been read (for the progress bar)."""

    def __init__(self, handle: BinaryIO, advance: Callable[[int], None]) -> None:
        self._handle = handle
        self._advance = advance

    def read(self, size: int = -1) -> bytes:
        chunk = self._handle.read(size)
        self._advance(len(chunk))
        return chunk


@registry_app.command("put")
def put(
    file: Annotated[Path, typer.Argument(help="File to store.")],
    media_type: Annotated[str, typer.Option(help="Media type recorded with the blob.")] = (
        "application/octet-stream"
    ),
) -> None:
    """Store FILE under its sha256 and print the digest (progress goes to stderr)."""
    try:
        handle = file.open("rb")
    except OSError as exc:
        raise ConfigError(
            f"{file} is not a readable file ({exc.strerror}): check the path"
        ) from exc
    columns = (
        TextColumn(f"storing {file.name}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
    )
    with (
        handle,
        open_registry() as reg,
        Progress(*columns, console=err_console, transient=True) as bar,
    ):
        task = bar.add_task("put", total=os.fstat(handle.fileno()).st_size)
        reader = _CountingReader(handle, lambda n: bar.advance(task, n))
        digest = reg.put_stream(cast(BinaryIO, reader), media_type=media_type)
    console.print(digest, highlight=False)


@registry_app.command("get")
def get(
    digest: Annotated[str, typer.Argument(help="sha256:<64 hex> digest of the blob.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the bytes.")],
) -> None:
    """Write the verified bytes of DIGEST to a file (nothing appears there until they are)."""
    from registry.hashing import parse_digest

    checked = parse_digest(digest)
    if output.is_dir():
        raise ConfigError(f"{output} is a folder: name the file to write, e.g. {output}/blob.bin")
    if not output.parent.resolve().is_dir():
        raise ConfigError(f"folder {output.parent} does not exist: create it first")
    # Killed by any signal, the get leaves nothing behind: the bytes go to an unnamed file
    # until they are verified (see registry.localfiles.StagedFile).
    try:
        with open_registry() as reg, console.status(f"fetching {checked[:19]} ..."):
            reg.get_to_file(checked, output)
    except KeyboardInterrupt:
        err_console.print(f"interrupted: nothing was written to {output}", highlight=False)
        raise
    console.print(
        f"wrote {output} ({human_size(output.stat().st_size)}, verified)", highlight=False
    )


@registry_app.command("verify")
def verify(
    quarantine: Annotated[
        bool,
        typer.Option(
            "--quarantine",
            help="Move blobs proven corrupt (re-read or store checksum) aside; a re-put of "
            "the bytes restores them. Nothing moves when reads disagree (transport?).",
        ),
    ] = False,
) -> None:
    """Re-hash every blob; list corrupt or missing ones (exit 1 if any)."""
    with open_registry() as reg:
        counter = TextColumn("{task.completed}/{task.total}")
        columns = (TextColumn("verifying"), BarColumn(), counter, TimeRemainingColumn())
        with Progress(*columns, console=console, transient=True) as bar:
            task = bar.add_task("verify", total=None)

            def advance(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            report = reg.verify(progress=advance, quarantine=quarantine)
    console.print(
        f"checked {report.checked} blobs ({human_size(report.bytes_checked)}); "
        f"{len(report.problems)} problem(s), {len(report.orphans)} orphan(s) awaiting gc",
        highlight=False,
    )
    if report.problems:
        rows = [{"digest": p.digest, "problem": p.problem} for p in report.problems]
        console.print(render_table("blobs that failed verification", rows))
        _explain(report, quarantine)
        raise typer.Exit(1)


def _explain(report: VerifyReport, quarantine: bool) -> None:
    """What the problems mean and what to do; --quarantine is suggested only for blobs proven
    corrupt, and never while the store or the transport is suspect."""
    kinds = [p.problem for p in report.problems]
    shaky = sum(kind in (UNSTABLE, STORE_INTACT) for kind in kinds)
    if report.store_suspect:
        console.print(f"[bold yellow]warning:[/] {report.store_suspect}", highlight=False)
    if shaky:
        console.print(
            f"{shaky} blob(s) marked (transport?) read differently each time or against the "
            "store's own checksum: their stored bytes are probably intact, so they were not "
            "moved; check the network, proxy or endpoint and verify again",
            highlight=False,
        )
    if report.quarantined:
        console.print(
            f"moved {len(report.quarantined)} proven-corrupt blob(s) aside; put their original "
            "bytes again to restore them",
            highlight=False,
        )
    elif CORRUPT in kinds and not quarantine and not report.store_suspect:
        console.print(
            "corrupt blobs (proven: two reads agreed, or the store's checksum did) can be moved "
            "aside with `retrain registry verify --quarantine`; then put their bytes again",
            highlight=False,
        )


@registry_app.command("gc")
def gc(
    grace: Annotated[str, typer.Option(help="Only blobs older than this (e.g. 24h, 7d).")] = "24h",
    delete: Annotated[bool, typer.Option("--delete", help="Really delete (default: dry run).")] = (
        False
    ),
) -> None:
    """Collect blobs older than the grace period that no catalog row references, and the
    snapshots failed retrains stored that nothing else uses (listed in their run.failed)."""
    from retrain.retention import apply_retention, registered_retention

    period = parse_duration(grace)
    with open_registry() as reg, console.status("scanning the blob store ..."):
        # Past a pipeline's privacy.retention_days first: its blobs then go in the same run.
        retention = apply_retention(reg, registered_retention(reg), dry_run=not delete)
        report = reg.gc(period, dry_run=not delete)
    verb = "deleted" if delete else "would delete"
    leftovers = set(report.failed_run_snapshots)
    rows = [
        {
            "digest": b.digest,
            "what": "snapshot of a failed run" if b.digest in leftovers else "unreferenced",
            "size": human_size(b.size),
            "modified": f"{b.modified:%Y-%m-%d %H:%M}",
        }
        for b in report.collected
    ]
    if rows:
        console.print(render_table(f"collectable blobs older than {grace}", rows))
    console.print(
        f"{verb} {len(report.collected)} blob(s), {human_size(report.bytes_collected)}; "
        f"{report.kept_young} younger than {grace} kept; {report.stale_temp_files} stale temp "
        f"file(s) {'removed' if delete else 'found'}"
        + ("" if delete else " (dry run: add --delete to remove them)"),
        highlight=False,
    )
    for line in retention.lines() if retention.expired or retention.kept else ():
        console.print(line, highlight=False, markup=False)


@models_app.command("ls")
def models_ls() -> None:
    """List models, their latest version and where their aliases point."""
    with open_registry() as reg:
        rows: list[dict[str, Any]] = []
        for name in reg.catalog.list_models():
            versions = reg.catalog.list_model_versions(name)
            aliases = reg.catalog.aliases(name)
            latest = versions[-1] if versions else None
            rows.append(
                {
                    "model": name,
                    "versions": len(versions),
                    "latest": latest.version if latest else None,
                    "latest status": latest.status if latest else None,
                    "champion": aliases.get("champion"),
                    "canary": aliases.get("canary"),
                }
            )
    if not rows:
        console.print("no models registered yet")
        return
    console.print(render_table("models", rows))


@models_app.command("aliases")
def models_aliases(name: Annotated[str, typer.Argument(help="Model name.")]) -> None:
    """Where each alias of a model points."""
    with open_registry() as reg:
        aliases = reg.catalog.aliases(name)
        if not aliases and name not in reg.catalog.list_models():
            raise ConfigError(f"no model named {name!r}: see `retrain models ls`")
        rows = []
        for alias, version in sorted(aliases.items()):
            record = reg.catalog.get_model_version(name, version)
            rows.append({"alias": alias, "version": version, "status": record.status})
    console.print(render_table(f"aliases of {name}", rows, ["alias", "version", "status"]))
