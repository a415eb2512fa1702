"""Agencies, users (people and service accounts) and API tokens."""

from __future__ import annotations

import datetime as dt
import enum
import functools
import re
from typing import Annotated, Any

import sqlglot
from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, Field
from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship
from sqlglot import exp

from civicshare.db import Base, UTCDateTime, utcnow

SLUG_RULE = (
    "must be a lowercase SQL identifier: a letter, then letters, digits or underscores, "
    "at most 63 characters"
)
_SLUG = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
# Words that would make `agency.dataset` ambiguous or collide with SQL catalogs.
RESERVED_SLUGS = frozenset(
    {
        "main",
        "temp",
        "system",
        "information_schema",
        "pg_catalog",
        "public",
        "select",
        "from",
        "where",
        "table",
        "duckdb",
        "memory",
        "open_data",
    }
)


def check_slug(value: str) -> str:
    if not _SLUG.fullmatch(value):
        raise ValueError(f"slug {SLUG_RULE}")
    if value in RESERVED_SLUGS or not _addressable(value):
        raise ValueError(f"slug '{value}' is reserved")
    return value


@functools.lru_cache(maxsize=4096)
def _addressable(slug: str) -> bool:
    """Whether SQL reads `slug` as a name on either side of `agency.dataset` (not `with`, `on`)."""
    for agency, dataset in ((slug, "x"), ("x", slug)):
        for sql in (
            f"SELECT * FROM {agency}.{dataset}",
            f"SELECT * FROM other.other JOIN {agency}.{dataset} AS t ON TRUE",
            f"SELECT {agency}.{dataset}.c FROM {agency}.{dataset}",
        ):
            try:
                tree = sqlglot.parse_one(sql, dialect="duckdb")
            except sqlglot.errors.SqlglotError:
                return False
            tables = [t for t in tree.find_all(exp.Table) if (t.db, t.name) != ("other", "other")]
            if not tables or any((t.db, t.name) != (agency, dataset) for t in tables):
                return False
    return True


Slug = Annotated[str, AfterValidator(check_slug)]


class AgencyLevel(enum.StrEnum):
    local = "local"
    regional = "regional"
    national = "national"


class Role(enum.StrEnum):
    admin = "admin"  # hub-wide administrator
    steward = "steward"  # manages an agency's datasets and agreements
    analyst = "analyst"  # queries data under agreements
    auditor = "auditor"  # reads the audit log
    viewer = "viewer"  # browses the catalog


class PrincipalKind(enum.StrEnum):
    person = "person"
    service = "service"


# ---------------------------------------------------------------------------- ORM


class Agency(Base):
    __tablename__ = "agency"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(63), unique=True, index=True)
    title: Mapped[str] = mapped_column(String(200))
    level: Mapped[str] = mapped_column(String(16), default=AgencyLevel.local.value)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("agency.id"), nullable=True)
    contact_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    contact_email: Mapped[str | None] = mapped_column(String(320), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    parent: Mapped[Agency | None] = relationship(remote_side=[id])


class User(Base):
    """A person (web portal and API) or a service account (API only)."""

    __tablename__ = "hub_user"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True, index=True)
    display_name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16), default=PrincipalKind.person.value)
    role: Mapped[str] = mapped_column(String(16))
    agency_id: Mapped[int | None] = mapped_column(ForeignKey("agency.id"), nullable=True)
    password_hash: Mapped[str | None] = mapped_column(String(200), nullable=True)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    agency: Mapped[Agency | None] = relationship()


class ApiToken(Base):
    """A bearer token. Only its SHA-256 is stored; the token itself is shown once."""

    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("hub_user.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    scopes: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)

    user: Mapped[User] = relationship()


# ---------------------------------------------------------------------------- schemas


class AgencyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    slug: Slug
    title: str = Field(min_length=1, max_length=200)
    level: AgencyLevel = AgencyLevel.local
    parent: Slug | None = None
    contact_name: str | None = Field(default=None, max_length=200)
    contact_email: EmailStr | None = None


class AgencyRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    slug: str
    title: str
    level: AgencyLevel
    parent: str | None = None
    contact_name: str | None = None
    contact_email: str | None = None
    created_at: dt.datetime

    @classmethod
    def of(cls, agency: Agency) -> AgencyRead:
        return cls(
            slug=agency.slug,
            title=agency.title,
            level=AgencyLevel(agency.level),
            parent=agency.parent.slug if agency.parent else None,
            contact_name=agency.contact_name,
            contact_email=agency.contact_email,
            created_at=agency.created_at,
        )


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: EmailStr
    display_name: str = Field(min_length=1, max_length=200)
    role: Role
    agency: Slug | None = None
    kind: PrincipalKind = PrincipalKind.person
    password: str | None = Field(default=None, min_length=12, max_length=1024, repr=False)


class UserRead(BaseModel):
    email: str
    display_name: str
    kind: PrincipalKind
    role: Role
    agency: str | None
    is_active: bool
    created_at: dt.datetime

    @classmethod
    def of(cls, user: User) -> UserRead:
        return cls(
            email=user.email,
            display_name=user.display_name,
            kind=PrincipalKind(user.kind),
            role=Role(user.role),
            agency=user.agency.slug if user.agency else None,
            is_active=user.is_active,
            created_at=user.created_at,
        )


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="api", min_length=1, max_length=100)
    user: EmailStr | None = Field(
        default=None, description="Whose token (admins only); default: self"
    )
    expires_in_days: int | None = Field(default=None, gt=0, le=3650)
    scopes: list[str] | None = None


class TokenRead(BaseModel):
    id: str
    name: str
    user: str
    scopes: list[str] | None
    created_at: dt.datetime
    expires_at: dt.datetime | None
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None

    @classmethod
    def of(cls, token: ApiToken) -> TokenRead:
        return cls(
            id=token.public_id,
            name=token.name,
            user=token.user.email,
            scopes=token.scopes,
            created_at=token.created_at,
            expires_at=token.expires_at,
            last_used_at=token.last_used_at,
            revoked_at=token.revoked_at,
        )


class TokenCreated(TokenRead):
    """Returned once, at creation: the only time the secret is visible."""

    token: str = Field(description="The bearer token. Store it now: it is never shown again.")


def as_json(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json")
