"""The one wiring module: builds clients from ``Settings`` and hands them down."""

from __future__ import annotations

from typing import TYPE_CHECKING

from retrain.settings import Settings

if TYPE_CHECKING:
    from registry.store import Registry

__all__ = ["build_registry"]


def build_registry(settings: Settings) -> Registry:
    """The registry (catalog + blob store) the settings name; directories made on demand."""
    from registry.store import Registry

    settings.home.mkdir(parents=True, exist_ok=True)
    return Registry.open(
        settings.registry_database_url,
        settings.registry_blob_url,
        s3_endpoint_url=settings.s3_endpoint_url,
        s3_region=settings.s3_region,
    )
