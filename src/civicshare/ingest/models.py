"""Ingest records: what was loaded, from which file, with what result, and its quarantine."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any, Literal, cast

from pydantic import BaseModel
from sqlalchemy import JSON, BigInteger, Float, ForeignKey, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from civicshare.catalog.models import Dataset
from civicshare.db import Base, UTCDateTime, utcnow

IngestMode = Literal["append", "replace", "upsert", "delete"]
MODES: tuple[IngestMode, ...] = ("append", "replace", "upsert", "delete")


class IngestStatus(enum.StrEnum):
    stored = "stored"  # a new version was written
    rejected = "rejected"  # too many bad rows: nothing stored


class IngestRecord(Base):
    """One ingest of one file. Rejected values are kept only sealed (``quarantine``)."""

    __tablename__ = "ingest"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("dataset.id"), index=True)
    actor_email: Mapped[str] = mapped_column(String(320))
    filename: Mapped[str] = mapped_column(String(300))
    file_sha256: Mapped[str] = mapped_column(String(64))
    file_bytes: Mapped[int] = mapped_column(BigInteger)
    format: Mapped[str] = mapped_column(String(16))
    mode: Mapped[str] = mapped_column(String(16))
    key: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    max_error_rate: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16))
    version: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    rows_read: Mapped[int] = mapped_column(BigInteger)
    rows_accepted: Mapped[int] = mapped_column(BigInteger)
    rows_rejected: Mapped[int] = mapped_column(BigInteger)
    errors_by_rule: Mapped[dict[str, int]] = mapped_column(JSON)
    # Row, field, rule and message of the first rejections (never values).
    rejections: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    # The rejected values, parallel to ``rejections``: AES-256-GCM under a per-ingest key.
    quarantine: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    quarantine_key: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    dataset: Mapped[Dataset] = relationship(lazy="joined")


class RejectionRead(BaseModel):
    row: int
    field: str | None
    rule: str
    message: str


class QuarantinedRow(RejectionRead):
    """A rejection with its value, as the caller may see it (masked when protected)."""

    value: str | None
    masked: bool = False


class IngestReport(BaseModel):
    """The outcome of an ingest, as returned by the service, the API and ``--json``."""

    id: str
    dataset: str
    mode: IngestMode
    key: list[str] | None
    status: IngestStatus
    version: int | None
    rows_read: int
    rows_accepted: int
    rows_rejected: int
    error_rate: float
    max_error_rate: float
    errors_by_rule: dict[str, int]
    rejections: list[RejectionRead]
    rejections_truncated: bool
    file: dict[str, Any]
    details: dict[str, Any]
    started_at: dt.datetime
    finished_at: dt.datetime

    @classmethod
    def of(cls, record: IngestRecord) -> IngestReport:
        rate = record.rows_rejected / record.rows_read if record.rows_read else 0.0
        return cls(
            id=record.id,
            dataset=record.dataset.ref,
            mode=cast(IngestMode, record.mode),
            key=record.key,
            status=IngestStatus(record.status),
            version=record.version,
            rows_read=record.rows_read,
            rows_accepted=record.rows_accepted,
            rows_rejected=record.rows_rejected,
            error_rate=round(rate, 6),
            max_error_rate=record.max_error_rate,
            errors_by_rule=dict(record.errors_by_rule),
            rejections=[RejectionRead(**item) for item in record.rejections],
            rejections_truncated=sum(record.errors_by_rule.values()) > len(record.rejections),
            file={
                "name": record.filename,
                "sha256": record.file_sha256,
                "bytes": record.file_bytes,
                "format": record.format,
                **{k: v for k, v in record.details.items() if k in ("encoding", "delimiter")},
            },
            details={k: v for k, v in record.details.items() if k not in ("encoding", "delimiter")},
            started_at=record.started_at,
            finished_at=record.finished_at,
        )


class IngestDetail(IngestReport):
    """The report plus the quarantine (``GET .../ingests/{id}``)."""

    quarantine: list[QuarantinedRow]
