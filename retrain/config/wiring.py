"""The one wiring module: builds clients from ``Settings`` and hands them down."""

from __future__ import annotations

from typing import TYPE_CHECKING

from retrain.config.settings import Settings

if TYPE_CHECKING:
    from registry.store import Registry
    from tasks.release.metric_sources import MetricsSource
    from tasks.release.preflight import ServerProbe
    from tasks.training.tracking import MlflowTracker

__all__ = [
    "build_metrics_source",
    "build_registry",
    "build_server_probe",
    "build_tracker",
    "serving_url",
]


def build_registry(settings: Settings) -> Registry:
    """The registry (catalog + blob store) the settings name; directories made on demand."""
    from registry.store import Registry

    settings.home.mkdir(parents=True, exist_ok=True)
    return Registry.open(
        settings.registry_database_url,
        settings.registry_blob_url,
        s3_endpoint_url=settings.s3_endpoint_url,
        s3_region=settings.s3_region,
        link_base=settings.blob_base_url,
    )


def build_tracker(settings: Settings, *, experiment: str = "retrain") -> MlflowTracker:
    """The MLflow tracker the settings name (SQLite under home by default); connects lazily.

    An MLflow server keeps artifacts where it is told (``--artifacts-destination``, e.g. S3):
    an experiment it creates gets its artifact root. Only embedded tracking (a database URI)
    gets a folder under home."""
    from tasks.training.tracking import MlflowTracker

    settings.home.mkdir(parents=True, exist_ok=True)
    served = settings.tracking_uri.startswith(("http://", "https://"))
    return MlflowTracker(
        settings.tracking_uri,
        experiment=experiment,
        artifact_location=None if served else (settings.home / "mlartifacts").resolve().as_uri(),
        strict=settings.mlflow_strict,
    )


def serving_url(settings: Settings) -> str:
    """Base URL of the model server the settings name."""
    return f"http://{settings.serve_host}:{settings.serve_port}"


def build_metrics_source(settings: Settings) -> MetricsSource:
    """Where canary analysis reads per-version counters: Prometheus if set, else the server."""
    from tasks.release.metric_sources import PrometheusSource, ServerStatsSource

    if settings.prometheus_url:
        return PrometheusSource(settings.prometheus_url)
    token = settings.serve_token.get_secret_value() if settings.serve_token else None
    return ServerStatsSource(serving_url(settings), token=token)


def build_server_probe(settings: Settings, url: str | None = None) -> ServerProbe:
    """The model server a release checks before its first canary step: ``url``, else the
    settings' ``serve_host:serve_port`` (also when canary metrics come from Prometheus)."""
    from tasks.release.preflight import ServerProbe

    token = settings.serve_token.get_secret_value() if settings.serve_token else None
    return ServerProbe(url or serving_url(settings), token=token)
