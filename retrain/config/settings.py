"""The one ``Settings`` object: environment (``RETRAIN_*``), an optional ``retrain.toml``, defaults.

Read once at the entry point (the CLI, the server, a flow) and passed down; nothing here
connects to anything.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

if TYPE_CHECKING:
    from tasks.data.sources import S3Options

__all__ = ["Settings"]


class Settings(BaseSettings):
    """Where the platform keeps its state and which services it talks to."""

    model_config = SettingsConfigDict(
        env_prefix="RETRAIN_", toml_file="retrain.toml", extra="forbid", frozen=True
    )

    home: Path = Field(default=Path(".retrain"), description="Folder for embedded state.")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the registry catalog (default: SQLite in home).",
    )
    blob_url: str | None = Field(
        default=None, description="file:///path or s3://bucket/prefix (default: home/blobs)."
    )
    s3_endpoint_url: str | None = Field(default=None, description="S3-compatible endpoint URL.")
    s3_region: str | None = Field(default=None, description="S3 region name.")
    mlflow_tracking_uri: str | None = Field(
        default=None, description="MLflow tracking URI (default: SQLite in home)."
    )
    mlflow_strict: bool = Field(
        default=False, description="Fail training when MLflow cannot be reached."
    )
    serve_host: str = "127.0.0.1"
    serve_port: int = 8080
    serve_token: SecretStr | None = Field(
        default=None,
        description="Bearer token the model server requires for feedback, stats and status.",
    )
    serve_auth_predict: bool = Field(
        default=False, description="Require the serve token for predict requests too."
    )
    serve_max_body_bytes: int = Field(
        default=1 << 20, ge=1, description="Largest predict or feedback body (413 above)."
    )
    serve_max_instances: int = Field(
        default=1000, ge=1, description="Most instances (or feedback items) in one request."
    )
    serve_request_id_max_chars: int = Field(
        default=128, ge=1, description="Longest X-Request-Id or routing key a caller may send."
    )
    serve_feedback_max_predictions: int = Field(
        default=1_000_000,
        ge=1,
        description="Predictions the server keeps for late feedback labels, all requests together.",
    )
    serve_predict_threads: int = Field(
        default=4, ge=1, description="Predictions computed at once, off the event loop."
    )
    serve_retired_series_grace_s: float = Field(
        default=600.0,
        ge=0,
        description="Seconds a version no longer served keeps its series in the server's metrics.",
    )
    alerts_host: str = "127.0.0.1"
    alerts_port: int = 8090
    alerts_token: SecretStr | None = Field(default=None, description="Bearer token for alerts.")
    alerts_hmac_secret: SecretStr | None = Field(
        default=None, description="Shared secret for HMAC-SHA256 signed alerts."
    )
    alerts_retention_days: float = Field(
        default=30.0,
        gt=0,
        description="Days a decided alert stays in the inbox before the receiver prunes it.",
    )
    pii_key: SecretStr | None = Field(
        default=None,
        description="Key of the HMAC-SHA256 that replaces a spec's `privacy.pii: hash` "
        "columns on load (RETRAIN_PII_KEY); keep it: the same key keeps joins matching.",
    )
    prometheus_url: str | None = Field(
        default=None,
        description="Prometheus base URL for canary analysis (default: the model server's stats).",
    )
    prefect_port: int = 4200
    mlflow_port: int = 5000
    blobs_host: str = "127.0.0.1"
    blobs_port: int = Field(
        default=8091, description="Port where `retrain up` serves registry documents over HTTP."
    )
    blob_base_url: str | None = Field(
        default=None,
        description="Base URL serving registry blobs over HTTP (Prefect artifacts link there; "
        "`retrain up` sets it for its children; default: file:// links to the store).",
    )

    memory_budget_mb: int = Field(
        default=1024,
        ge=64,
        description="MiB a data stage may hold at once: a local Parquet source larger than "
        "this is snapshotted, validated and drift-checked in batches (tasks.data.streaming).",
    )

    expectations_path: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="Folders where a spec's contract name is looked up as <name>.json, in "
        "order, before the shipped suites (RETRAIN_EXPECTATIONS_PATH: os.pathsep-separated).",
    )
    expectations_dir: Path | None = Field(
        default=None, description="One more folder of suites, searched before expectations_path."
    )

    @field_validator("expectations_path", mode="before")
    @classmethod
    def _split_path(cls, value: Any) -> Any:
        # The environment gives one string, as PATH does; retrain.toml may give a list.
        if isinstance(value, str):
            return [part for part in value.split(os.pathsep) if part.strip()]
        return value

    @property
    def suite_folders(self) -> list[Path]:
        """Where contract names are looked up, in order (the shipped suites come after)."""
        first = [self.expectations_dir] if self.expectations_dir is not None else []
        return [*first, *self.expectations_path]

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    @property
    def registry_database_url(self) -> str:
        """The catalog URL; SQLite under ``home`` unless configured."""
        return self.database_url or f"sqlite:///{(self.home / 'registry.db').resolve()}"

    @property
    def registry_blob_url(self) -> str:
        """The blob store URL; a folder under ``home`` unless configured."""
        return self.blob_url or (self.home / "blobs").resolve().as_uri()

    @property
    def s3_options(self) -> S3Options:
        """Keyword arguments naming the S3 endpoint and region, for dataset sources."""
        return {"s3_endpoint_url": self.s3_endpoint_url, "s3_region": self.s3_region}

    @property
    def tracking_uri(self) -> str:
        """The MLflow tracking URI; SQLite under ``home`` unless configured."""
        return self.mlflow_tracking_uri or f"sqlite:///{(self.home / 'mlflow.db').resolve()}"
