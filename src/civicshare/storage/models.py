"""Keys, encrypted segments and dataset versions."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel
from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from civicshare.db import Base, UTCDateTime, utcnow


class AgencyKey(Base):
    """An agency's key-encryption key, wrapped by the master key. One active version per agency."""

    __tablename__ = "agency_key"
    __table_args__ = (UniqueConstraint("agency_id", "version", name="uq_agency_key_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    agency_id: Mapped[int] = mapped_column(ForeignKey("agency.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    # Cleared when the key is retired by a rotation: nothing is wrapped under it any more.
    wrapped: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    provider_key_id: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    retired_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class DataKey(Base):
    """A dataset's data key, wrapped by its agency's key. Destroying it shreds the dataset."""

    __tablename__ = "data_key"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("dataset.id"), unique=True)
    agency_key_id: Mapped[int] = mapped_column(ForeignKey("agency_key.id"), index=True)
    wrapped: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    rewrapped_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    destroyed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class StorageSegment(Base):
    """An immutable encrypted Parquet file. It exists once a version referencing it commits."""

    __tablename__ = "storage_segment"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("dataset.id"), index=True)
    path: Mapped[str] = mapped_column(String(500), unique=True)
    row_count: Mapped[int] = mapped_column(BigInteger)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    chunk_size: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class DatasetVersion(Base):
    """An immutable list of segments, a row count and the schema they follow."""

    __tablename__ = "dataset_version"
    __table_args__ = (
        UniqueConstraint("dataset_id", "number", name="uq_dataset_version_number"),
        Index("ix_dataset_version_dataset_created", "dataset_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("dataset.id"))
    number: Mapped[int] = mapped_column(Integer)
    row_count: Mapped[int] = mapped_column(BigInteger)
    schema_hash: Mapped[str] = mapped_column(String(64))
    operation: Mapped[str] = mapped_column(String(16))
    segment_ids: Mapped[list[str]] = mapped_column(JSON)
    created_by: Mapped[str | None] = mapped_column(String(320), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


# ---------------------------------------------------------------------------- schemas


class VersionRead(BaseModel):
    number: int
    row_count: int
    schema_hash: str
    operation: str
    segments: int
    created_by: str | None
    created_at: dt.datetime
    details: dict[str, Any] | None

    @classmethod
    def of(cls, version: DatasetVersion, *, signed_in: bool = True) -> VersionRead:
        """``signed_in=False`` leaves out who wrote the version: a member of staff's address
        is not for the anonymous public, even on an open dataset."""
        return cls(
            number=version.number,
            row_count=version.row_count,
            schema_hash=version.schema_hash,
            operation=version.operation,
            segments=len(version.segment_ids),
            created_by=version.created_by if signed_in else None,
            created_at=version.created_at,
            details=version.details,
        )


class GcReport(BaseModel):
    applied: bool
    orphans: list[str]
    orphan_bytes: int
    shredded: list[str]
    shredded_bytes: int
    referenced: int


class KeyRotation(BaseModel):
    agency: str
    version: int
    rewrapped_data_keys: int
    retired_version: int | None
