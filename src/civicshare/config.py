"""Typed hub settings, read from the environment (prefix ``CIVICSHARE_``).

Settings fail closed: outside demo mode the hub refuses to run without a readable master key.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from civicshare.errors import ConfigurationError

DEFAULT_MAX_BODY_BYTES = 1024 * 1024  # JSON bodies; uploads have their own limit
DEFAULT_MAX_UPLOAD_BYTES = 2 * 1024 * 1024 * 1024


class Settings(BaseSettings):
    """Everything the hub reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="CIVICSHARE_", extra="ignore")

    home: Path = Field(default=Path(".civicshare"), description="Hub home folder")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL of the metadata store (default: SQLite in home)"
    )
    storage_url: str | None = Field(
        default=None, description="Where segments live: file:// folder or s3:// (default: home)"
    )
    master_key_file: Path | None = Field(
        default=None, description="Master key file (default: home/master.key)"
    )
    demo: bool = Field(default=False, description="Demo mode: creates a master key if missing")
    hub_name: str = Field(default="civicshare", description="Name shown in checkpoints and pages")
    public_url: str = Field(default="http://127.0.0.1:8000", description="Base URL clients use")
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, gt=0)
    max_upload_bytes: int = Field(default=DEFAULT_MAX_UPLOAD_BYTES, gt=0)
    token_ttl_days: int = Field(default=90, gt=0, description="Default API token lifetime")
    sharing_rows_per_file: int = Field(
        default=1 << 20,
        gt=0,
        description="Rows per Parquet file served over Delta Sharing (smaller files: more "
        "parallel downloads and finer skipping by predicate hints)",
    )

    audit_integrate_interval: float = Field(
        default=0.5,
        ge=0,
        description="Seconds between a served hub's background passes that hash new audit "
        "records into the Merkle tree, so a checkpoint is signable right after the last "
        "append (0: only when a checkpoint or proof needs it)",
    )

    agreement_expiry_sweep_interval: float = Field(
        default=30.0,
        gt=0,
        description="Seconds between a served hub's sweeps that record, once each, the "
        "agreements whose validity window has closed (agreement.expire)",
    )

    @field_validator("home")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @cached_property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'hub.db'}"

    @cached_property
    def resolved_storage_url(self) -> str:
        return self.storage_url or (self.home / "storage").as_uri()

    @cached_property
    def resolved_master_key_file(self) -> Path:
        return (self.master_key_file or self.home / "master.key").expanduser().resolve()

    def require_master_key(self) -> Path:
        """Fail closed: the key file must exist and be readable outside demo mode."""
        path = self.resolved_master_key_file
        if path.is_file():
            try:
                path.read_bytes()
            except OSError as exc:
                raise ConfigurationError(
                    f"cannot read the master key file {path}: {exc.strerror}"
                ) from exc
            return path
        raise ConfigurationError(
            f"no master key at {path}; create one with `civicshare init` "
            "(or set CIVICSHARE_MASTER_KEY_FILE to an existing key file)"
        )


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment, with explicit overrides taking precedence."""
    return Settings(**overrides)  # type: ignore[arg-type]
