"""Data-sharing agreements (with their per-dataset grants), daily usage and objections."""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, EmailStr, Field, field_validator
from sqlalchemy import JSON, Boolean, Date, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from civicshare.agency.models import Agency
from civicshare.catalog.models import Dataset
from civicshare.db import Base, UTCDateTime, utcnow
from civicshare.policy.treatments import parse_treatment
from civicshare.policy.view import DEFAULT_MIN_CELL

# The controlled vocabulary of purposes (free text goes in ``purpose_text``).
PURPOSES = (
    "emergency_response",
    "public_health_surveillance",
    "service_delivery",
    "research",
    "statistics",
    "law_enforcement",
)


class Status(enum.StrEnum):
    """Stored decision; ``active`` and ``expired`` follow from it and the validity window."""

    requested = "requested"
    approved = "approved"
    rejected = "rejected"
    revoked = "revoked"


class State(enum.StrEnum):
    requested = "requested"
    approved = "approved"  # approved, window not yet open
    active = "active"
    expired = "expired"
    rejected = "rejected"
    revoked = "revoked"


# ---------------------------------------------------------------------------- ORM


class Agreement(Base):
    __tablename__ = "agreement"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, index=True)
    provider_agency_id: Mapped[int] = mapped_column(ForeignKey("agency.id"), index=True)
    recipient_agency_id: Mapped[int] = mapped_column(ForeignKey("agency.id"), index=True)
    # Empty: every analyst and steward of the recipient agency; else only these emails.
    recipient_users: Mapped[list[str]] = mapped_column(JSON, default=list)
    title: Mapped[str] = mapped_column(String(300))
    purpose: Mapped[str] = mapped_column(String(64), index=True)
    purpose_text: Mapped[str] = mapped_column(Text, default="")
    legal_basis: Mapped[str] = mapped_column(Text)
    valid_from: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    valid_until: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16), index=True, default=Status.requested.value)
    aggregate_only: Mapped[bool] = mapped_column(Boolean, default=False)
    # Recipients may read past versions and the change data feed (Delta Sharing), not only
    # the current version.
    allow_history: Mapped[bool] = mapped_column(Boolean, default=False)
    min_cell: Mapped[int] = mapped_column(Integer, default=DEFAULT_MIN_CELL)
    max_queries_per_day: Mapped[int | None] = mapped_column(Integer, nullable=True)
    max_rows_per_day: Mapped[int | None] = mapped_column(Integer, nullable=True)
    allow_sensitive: Mapped[bool] = mapped_column(Boolean, default=False)
    sensitive_justification: Mapped[str | None] = mapped_column(Text, nullable=True)
    requested_by: Mapped[str] = mapped_column(String(320))
    decided_by: Mapped[str | None] = mapped_column(String(320), nullable=True)
    decided_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    decision_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    revoked_by: Mapped[str | None] = mapped_column(String(320), nullable=True)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # When the hub recorded ``agreement.expire`` (once; nobody acts when a window closes).
    expiry_recorded_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    provider: Mapped[Agency] = relationship(foreign_keys=[provider_agency_id], lazy="joined")
    recipient: Mapped[Agency] = relationship(foreign_keys=[recipient_agency_id], lazy="joined")
    grants: Mapped[list[AgreementDataset]] = relationship(
        back_populates="agreement", cascade="all, delete-orphan", lazy="selectin"
    )

    def state(self, now: dt.datetime | None = None) -> State:
        return agreement_state(self.status, self.valid_from, self.valid_until, now)

    @property
    def limited(self) -> bool:
        """Whether the agreement has daily limits (only then are its queries counted per day)."""
        return self.max_queries_per_day is not None or self.max_rows_per_day is not None


def agreement_state(
    status: str, valid_from: dt.datetime, valid_until: dt.datetime, now: dt.datetime | None = None
) -> State:
    """An agreement's state from its stored decision and validity window, at ``now``."""
    moment = now or utcnow()
    if status != Status.approved.value:
        return State(status)
    if moment < valid_from:
        return State.approved
    if moment >= valid_until:
        return State.expired
    return State.active


@dataclass(frozen=True)
class AgreementTerms:
    """What a query needs of one agreement and its grant of one dataset (see
    ``policy.service.agreements_for``): read afresh on every query, so a revocation or an
    expiry applies to the next one."""

    id: int
    public_id: str
    purpose: str
    status: str
    valid_from: dt.datetime
    valid_until: dt.datetime
    recipient_users: tuple[str, ...]
    aggregate_only: bool
    min_cell: int
    max_queries_per_day: int | None
    max_rows_per_day: int | None
    columns: tuple[tuple[str, str], ...]  # the grant: (column, treatment spec), in order
    row_filter: str | None

    def state(self, now: dt.datetime | None = None) -> State:
        return agreement_state(self.status, self.valid_from, self.valid_until, now)

    @property
    def limited(self) -> bool:
        return self.max_queries_per_day is not None or self.max_rows_per_day is not None


class AgreementDataset(Base):
    """One dataset of an agreement: granted columns with treatments, and a row filter."""

    __tablename__ = "agreement_dataset"
    __table_args__ = (UniqueConstraint("agreement_id", "dataset_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    agreement_id: Mapped[int] = mapped_column(
        ForeignKey("agreement.id", ondelete="CASCADE"), index=True
    )
    dataset_id: Mapped[int] = mapped_column(ForeignKey("dataset.id"), index=True)
    # [[column, treatment spec], ...] in the order the recipient sees them.
    columns: Mapped[list[list[str]]] = mapped_column(JSON)
    row_filter: Mapped[str | None] = mapped_column(Text, nullable=True)

    agreement: Mapped[Agreement] = relationship(back_populates="grants")
    dataset: Mapped[Dataset] = relationship(lazy="joined")


class AgreementUsage(Base):
    """Queries and rows released per agreement per UTC day (for the optional daily limits)."""

    __tablename__ = "agreement_usage"
    __table_args__ = (UniqueConstraint("agreement_id", "day"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    agreement_id: Mapped[int] = mapped_column(
        ForeignKey("agreement.id", ondelete="CASCADE"), index=True
    )
    day: Mapped[dt.date] = mapped_column(Date)
    queries: Mapped[int] = mapped_column(Integer, default=0)
    rows: Mapped[int] = mapped_column(Integer, default=0)


class Objection(Base):
    """A resident's objection to sharing for some purposes; the identifier is a keyed hash."""

    __tablename__ = "objection"
    __table_args__ = (UniqueConstraint("agency_id", "field", "subject_hash"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, index=True)
    agency_id: Mapped[int] = mapped_column(ForeignKey("agency.id"), index=True)
    field: Mapped[str] = mapped_column(String(63))
    subject_hash: Mapped[str] = mapped_column(String(64))
    purposes: Mapped[list[str]] = mapped_column(JSON)
    created_by: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    withdrawn_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)

    agency: Mapped[Agency] = relationship(lazy="joined")


# ---------------------------------------------------------------------------- schemas


def _check_purpose(value: str) -> str:
    if value not in PURPOSES:
        raise ValueError(f"purpose must be one of {', '.join(PURPOSES)}")
    return value


class DatasetGrant(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset: str = Field(description="agency.dataset of the provider")
    columns: dict[str, str] = Field(
        min_length=1, description="column -> treatment (clear, redact, show_last(n), ...)"
    )
    row_filter: str | None = Field(default=None, max_length=4000)

    @field_validator("columns")
    @classmethod
    def _treatments(cls, value: dict[str, str]) -> dict[str, str]:
        return {name: parse_treatment(spec).spec for name, spec in value.items()}


class AgreementRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=300)
    recipient: str = Field(description="recipient agency slug")
    recipient_users: list[EmailStr] = Field(default_factory=list)
    purpose: str
    purpose_text: str = Field(default="", max_length=4000)
    legal_basis: str = Field(min_length=1, max_length=4000)
    valid_from: dt.datetime
    valid_until: dt.datetime
    datasets: list[DatasetGrant] = Field(min_length=1)
    aggregate_only: bool = False
    allow_history: bool = Field(
        default=False,
        description="Recipients may read past versions and the change data feed (Delta Sharing)",
    )
    min_cell: int = Field(default=DEFAULT_MIN_CELL, ge=2, le=1000)
    max_queries_per_day: int | None = Field(default=None, gt=0)
    max_rows_per_day: int | None = Field(default=None, gt=0)
    allow_sensitive: bool = False
    sensitive_justification: str | None = Field(default=None, max_length=4000)

    _purpose = field_validator("purpose")(_check_purpose)


class AgreementDecision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=4000)


class GrantRead(BaseModel):
    dataset: str
    columns: dict[str, str]
    row_filter: str | None


class AgreementRead(BaseModel):
    id: str
    title: str
    provider: str
    recipient: str
    recipient_users: list[str]
    purpose: str
    purpose_text: str
    legal_basis: str
    valid_from: dt.datetime
    valid_until: dt.datetime
    status: str
    state: State
    aggregate_only: bool
    allow_history: bool
    min_cell: int
    max_queries_per_day: int | None
    max_rows_per_day: int | None
    allow_sensitive: bool
    sensitive_justification: str | None
    datasets: list[GrantRead]
    requested_by: str
    decided_by: str | None
    decided_at: dt.datetime | None
    decision_reason: str | None
    revoked_by: str | None
    revoked_at: dt.datetime | None
    created_at: dt.datetime

    @classmethod
    def of(cls, agreement: Agreement) -> AgreementRead:
        return cls(
            id=agreement.public_id,
            title=agreement.title,
            provider=agreement.provider.slug,
            recipient=agreement.recipient.slug,
            recipient_users=list(agreement.recipient_users or []),
            purpose=agreement.purpose,
            purpose_text=agreement.purpose_text,
            legal_basis=agreement.legal_basis,
            valid_from=agreement.valid_from,
            valid_until=agreement.valid_until,
            status=agreement.status,
            state=agreement.state(),
            aggregate_only=agreement.aggregate_only,
            allow_history=agreement.allow_history,
            min_cell=agreement.min_cell,
            max_queries_per_day=agreement.max_queries_per_day,
            max_rows_per_day=agreement.max_rows_per_day,
            allow_sensitive=agreement.allow_sensitive,
            sensitive_justification=agreement.sensitive_justification,
            datasets=[
                GrantRead(
                    dataset=grant.dataset.ref,
                    columns=dict(grant.columns),
                    row_filter=grant.row_filter,
                )
                for grant in agreement.grants
            ],
            requested_by=agreement.requested_by,
            decided_by=agreement.decided_by,
            decided_at=agreement.decided_at,
            decision_reason=agreement.decision_reason,
            revoked_by=agreement.revoked_by,
            revoked_at=agreement.revoked_at,
            created_at=agreement.created_at,
        )


class ObjectionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agency: str
    field: str = Field(min_length=1, max_length=63, description="identifier column, e.g. person_id")
    value: str = Field(
        min_length=1, max_length=200, repr=False, description="the resident's identifier"
    )
    purposes: list[str] = Field(min_length=1)

    @field_validator("purposes")
    @classmethod
    def _purposes(cls, value: list[str]) -> list[str]:
        return sorted({_check_purpose(item) for item in value})


class ObjectionRead(BaseModel):
    id: str
    agency: str
    field: str
    purposes: list[str]
    created_by: str
    created_at: dt.datetime
    withdrawn_at: dt.datetime | None

    @classmethod
    def of(cls, objection: Objection) -> ObjectionRead:
        return cls(
            id=objection.public_id,
            agency=objection.agency.slug,
            field=objection.field,
            purposes=list(objection.purposes),
            created_by=objection.created_by,
            created_at=objection.created_at,
            withdrawn_at=objection.withdrawn_at,
        )


class QueryableColumn(BaseModel):
    name: str
    type: str  # the stored Table Schema type (a treatment may change what is released)
    treatment: str = "clear"


class QueryableTable(BaseModel):
    """A dataset an actor may name in a governed query, and on what terms."""

    ref: str
    title: str
    access: str  # "own" | "public" | "agreement", as in the policy view
    columns: list[QueryableColumn]
    agreement: str | None = None
    agreement_title: str | None = None
    purpose: str | None = None
    row_filter: str | None = None
    aggregate_only: bool = False
    min_cell: int | None = None
