"""Prefect artifacts from plain code: tables, markdown, links and progress.

Plain functions call these freely; outside a Prefect flow or task run they do nothing, so the
same code serves the CLI, the tests and the flows. Prefect is imported only when a run is live.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast
from uuid import UUID

if TYPE_CHECKING:
    from registry.store import Registry

__all__ = [
    "ProgressReporter",
    "artifact_key",
    "blob_link",
    "in_prefect_run",
    "publish_link",
    "publish_markdown",
    "publish_table",
]

_KEY_UNSAFE = re.compile(r"[^a-z0-9-]+")


def artifact_key(*parts: str) -> str:
    """A stable Prefect artifact key (lowercase letters, digits and dashes) from ``parts``."""
    joined = "-".join(p for p in parts if p)
    return _KEY_UNSAFE.sub("-", joined.lower()).strip("-")


def in_prefect_run() -> bool:
    """True inside a Prefect flow or task run (and only if Prefect is already imported)."""
    if "prefect" not in sys.modules:
        return False
    from prefect.context import FlowRunContext, TaskRunContext

    return FlowRunContext.get() is not None or TaskRunContext.get() is not None


def publish_table(
    key: str, rows: Sequence[Mapping[str, Any]], description: str = ""
) -> UUID | None:
    """Publish ``rows`` as a Prefect table artifact when inside a run."""
    if not in_prefect_run():
        return None
    from prefect.artifacts import create_table_artifact

    table = [{k: _cell(v) for k, v in row.items()} for row in rows]
    # Called from sync code, Prefect's dual sync/async API returns the id itself.
    return cast(UUID, create_table_artifact(table=table, key=key, description=description))


def publish_markdown(key: str, markdown: str, description: str = "") -> UUID | None:
    """Publish ``markdown`` as a Prefect markdown artifact when inside a run."""
    if not in_prefect_run():
        return None
    from prefect.artifacts import create_markdown_artifact

    return cast(UUID, create_markdown_artifact(markdown=markdown, key=key, description=description))


def publish_link(key: str, link: str, link_text: str, description: str = "") -> UUID | None:
    """Publish a link artifact (e.g. to a stored report) when inside a run."""
    if not in_prefect_run():
        return None
    from prefect.artifacts import create_link_artifact

    return cast(
        UUID,
        create_link_artifact(link=link, link_text=link_text, key=key, description=description),
    )


def blob_link(registry: Registry, digest: str, filename: str) -> str:
    """Where a person opens blob ``digest`` from the Prefect UI.

    With the registry's HTTP base set (``retrain up`` serves blobs there), an ``http://`` URL
    whose last part names the file (``drift-report.html``), so the browser shows it with the
    right type; otherwise the store's own address (``file://`` path or ``s3://`` key), which a
    browser may refuse but a person can still copy.
    """
    if registry.link_base:
        hex_digest = digest.removeprefix("sha256:")
        return f"{registry.link_base.rstrip('/')}/blobs/sha256/{hex_digest}/{filename}"
    blobs: Any = registry.blobs
    if hasattr(blobs, "path_of"):
        return str(blobs.path_of(digest).resolve().as_uri())
    if hasattr(blobs, "key_of") and hasattr(blobs, "bucket"):
        return f"s3://{blobs.bucket}/{blobs.key_of(digest)}"
    return digest


class ProgressReporter:
    """A Prefect progress artifact (0-100) that is a no-op outside a run."""

    def __init__(self, key: str, description: str = "") -> None:
        self._id: UUID | None = None
        self._last = -1.0
        if in_prefect_run():
            from prefect.artifacts import create_progress_artifact

            self._id = cast(
                UUID, create_progress_artifact(progress=0.0, key=key, description=description)
            )

    def update(self, fraction: float) -> None:
        """Report progress as a fraction in [0, 1]; throttled to whole percent steps."""
        percent = round(max(0.0, min(1.0, fraction)) * 100.0, 0)
        if self._id is None or percent <= self._last:
            return
        from prefect.artifacts import update_progress_artifact

        self._last = percent
        update_progress_artifact(artifact_id=self._id, progress=percent)


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, str | int | bool) or value is None:
        return value
    return str(value)
