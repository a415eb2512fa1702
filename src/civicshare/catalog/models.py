"""Datasets (DCAT metadata, visibility) and their versioned Table Schemas."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    model_validator,
)
from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from civicshare.agency.models import Agency, Slug
from civicshare.catalog.tableschema import Classification, PlainText, TableSchema, without_nul
from civicshare.db import Base, UTCDateTime, utcnow


class Visibility(enum.StrEnum):
    private = "private"  # only the owning agency
    hub = "hub"  # discoverable by every authenticated user; data by agreement
    public = "public"  # open data


class Frequency(enum.StrEnum):
    """Update frequencies, a subset of the EU frequency vocabulary used by DCAT-AP."""

    continuous = "continuous"
    hourly = "hourly"
    daily = "daily"
    weekly = "weekly"
    monthly = "monthly"
    quarterly = "quarterly"
    annual = "annual"
    irregular = "irregular"
    never = "never"


# A keyword is a word or short phrase (DCAT dcat:keyword), never blank.
Keyword = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    AfterValidator(without_nul),
]

# ---------------------------------------------------------------------------- ORM


class Dataset(Base):
    __tablename__ = "dataset"
    __table_args__ = (UniqueConstraint("agency_id", "slug", name="uq_dataset_agency_slug"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    agency_id: Mapped[int] = mapped_column(ForeignKey("agency.id"), index=True)
    slug: Mapped[str] = mapped_column(String(63))
    title: Mapped[str] = mapped_column(String(300))
    description: Mapped[str] = mapped_column(Text, default="")
    keywords: Mapped[list[str]] = mapped_column(JSON, default=list)
    theme: Mapped[str | None] = mapped_column(String(100), index=True, nullable=True)
    license: Mapped[str | None] = mapped_column(String(300), nullable=True)
    contact: Mapped[str | None] = mapped_column(String(320), nullable=True)
    spatial: Mapped[str | None] = mapped_column(String(300), nullable=True)
    temporal_start: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    temporal_end: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    frequency: Mapped[str | None] = mapped_column(String(32), nullable=True)
    visibility: Mapped[str] = mapped_column(String(16), index=True)
    # The most protected field classification of the current schema (a search facet).
    classification: Mapped[str] = mapped_column(String(16), index=True)
    schema_version: Mapped[int] = mapped_column(Integer, default=1)
    # Metadata and field names flattened for full-text search (no data values ever).
    search_text: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    purged_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)

    agency: Mapped[Agency] = relationship(lazy="joined")

    @property
    def ref(self) -> str:
        """How SQL and the CLI address the dataset: ``agency.dataset``."""
        return f"{self.agency.slug}.{self.slug}"


class DatasetSchema(Base):
    """One version of a dataset's Table Schema; the highest number is current."""

    __tablename__ = "dataset_schema"
    __table_args__ = (UniqueConstraint("dataset_id", "number", name="uq_dataset_schema_number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("dataset.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    table_schema: Mapped[dict[str, Any]] = mapped_column(JSON)
    schema_hash: Mapped[str] = mapped_column(String(64), index=True)
    breaking: Mapped[bool] = mapped_column(Boolean, default=False)
    changes: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_by: Mapped[str | None] = mapped_column(String(320), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    def parsed(self) -> TableSchema:
        return TableSchema.model_validate(self.table_schema)


# ---------------------------------------------------------------------------- schemas


class DatasetMetadata(BaseModel):
    """The DCAT descriptive fields, shared by create and update."""

    model_config = ConfigDict(extra="forbid")

    description: PlainText = Field(default="", max_length=20_000)
    keywords: list[Keyword] = Field(default_factory=list, max_length=50)
    theme: PlainText | None = Field(default=None, max_length=100)
    license: PlainText | None = Field(default=None, max_length=300)
    contact: EmailStr | None = None
    spatial: PlainText | None = Field(default=None, max_length=300)
    temporal_start: dt.date | None = None
    temporal_end: dt.date | None = None
    frequency: Frequency | None = None

    @model_validator(mode="after")
    def _ordered_coverage(self) -> DatasetMetadata:
        if self.temporal_start and self.temporal_end and self.temporal_start > self.temporal_end:
            raise ValueError("temporal_start is after temporal_end")
        return self


class DatasetCreate(DatasetMetadata):
    agency: Slug
    slug: Slug
    title: PlainText = Field(min_length=1, max_length=300)
    visibility: Visibility = Visibility.private
    table_schema: TableSchema


class DatasetUpdate(BaseModel):
    """A partial update of the descriptive fields and visibility (``None`` keeps a value)."""

    model_config = ConfigDict(extra="forbid")

    title: PlainText | None = Field(default=None, min_length=1, max_length=300)
    description: PlainText | None = Field(default=None, max_length=20_000)
    keywords: list[Keyword] | None = Field(default=None, max_length=50)
    theme: PlainText | None = Field(default=None, max_length=100)
    license: PlainText | None = Field(default=None, max_length=300)
    contact: EmailStr | None = None
    spatial: PlainText | None = Field(default=None, max_length=300)
    temporal_start: dt.date | None = None
    temporal_end: dt.date | None = None
    frequency: Frequency | None = None
    visibility: Visibility | None = None


class SchemaUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    table_schema: TableSchema
    breaking: bool = Field(
        default=False, description="Acknowledge a breaking change (removed field, narrowed type…)"
    )


class DatasetRead(BaseModel):
    ref: str
    agency: str
    slug: str
    title: str
    description: str
    keywords: list[str]
    theme: str | None
    license: str | None
    contact: str | None
    spatial: str | None
    temporal_start: dt.date | None
    temporal_end: dt.date | None
    frequency: str | None
    visibility: Visibility
    classification: Classification
    schema_version: int
    created_at: dt.datetime
    updated_at: dt.datetime
    purged_at: dt.datetime | None

    @classmethod
    def of(cls, dataset: Dataset) -> DatasetRead:
        return cls(
            ref=dataset.ref,
            agency=dataset.agency.slug,
            slug=dataset.slug,
            title=dataset.title,
            description=dataset.description,
            keywords=list(dataset.keywords or []),
            theme=dataset.theme,
            license=dataset.license,
            contact=dataset.contact,
            spatial=dataset.spatial,
            temporal_start=dataset.temporal_start,
            temporal_end=dataset.temporal_end,
            frequency=dataset.frequency,
            visibility=Visibility(dataset.visibility),
            classification=dataset.classification,
            schema_version=dataset.schema_version,
            created_at=dataset.created_at,
            updated_at=dataset.updated_at,
            purged_at=dataset.purged_at,
        )


class DatasetDetail(DatasetRead):
    """A dataset with its current Table Schema."""

    table_schema: dict[str, Any]

    @classmethod
    def with_schema(cls, dataset: Dataset, schema: TableSchema) -> DatasetDetail:
        return cls(**DatasetRead.of(dataset).model_dump(), table_schema=schema.canonical())


class SchemaVersionRead(BaseModel):
    number: int
    schema_hash: str
    breaking: bool
    changes: list[str]
    created_by: str | None
    created_at: dt.datetime
    table_schema: dict[str, Any]

    @classmethod
    def of(cls, row: DatasetSchema, *, signed_in: bool = True) -> SchemaVersionRead:
        """``signed_in=False`` leaves out who made the version: a member of staff's address
        is not for the anonymous public, even on an open dataset."""
        return cls(
            number=row.number,
            schema_hash=row.schema_hash,
            breaking=row.breaking,
            changes=list(row.changes or []),
            created_by=row.created_by if signed_in else None,
            created_at=row.created_at,
            table_schema=row.table_schema,
        )


class SearchResult(BaseModel):
    total: int
    items: list[DatasetRead]
    facets: dict[str, dict[str, int]]
