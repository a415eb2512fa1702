"""Delta Sharing recipients: share profiles (bearer tokens scoped to one agreement)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from civicshare.db import Base, UTCDateTime, utcnow

PROFILE_TOKEN_PREFIX = "csds_"
SHARE_CREDENTIALS_VERSION = 1


class ShareProfile(Base):
    """A recipient's credential for the Delta Sharing endpoint.

    Scoped to one agreement (``agreement_id``), or to the open-data share only when it has none.
    Only the SHA-256 of the bearer token is stored; the token is shown once, in the profile file.
    """

    __tablename__ = "share_profile"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, index=True)
    agreement_id: Mapped[int | None] = mapped_column(Integer, index=True, nullable=True)
    recipient_agency_id: Mapped[int | None] = mapped_column(
        ForeignKey("agency.id"), index=True, nullable=True
    )
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    created_by: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ShareProfileCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="delta-sharing", min_length=1, max_length=100)
    expires_in_days: int | None = Field(
        default=None, gt=0, le=3650, description="Default: when the agreement ends (or 90 days)"
    )


class ShareProfileRead(BaseModel):
    id: str
    name: str
    agreement: int | None
    created_by: str
    created_at: dt.datetime
    expires_at: dt.datetime | None
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None

    @classmethod
    def of(cls, profile: ShareProfile) -> ShareProfileRead:
        return cls(
            id=profile.public_id,
            name=profile.name,
            agreement=profile.agreement_id,
            created_by=profile.created_by,
            created_at=profile.created_at,
            expires_at=profile.expires_at,
            last_used_at=profile.last_used_at,
            revoked_at=profile.revoked_at,
        )


class ProfileFile(BaseModel):
    """The Delta Sharing profile file a recipient loads into their client (shown once)."""

    model_config = ConfigDict(populate_by_name=True)

    share_credentials_version: int = Field(
        default=SHARE_CREDENTIALS_VERSION, alias="shareCredentialsVersion"
    )
    endpoint: str
    bearer_token: str = Field(alias="bearerToken")
    expiration_time: str | None = Field(default=None, alias="expirationTime")

    def as_file(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True)


class ShareProfileCreated(BaseModel):
    """Returned once, at creation: the profile and the profile file with its secret."""

    profile: ShareProfileRead
    share: str
    profile_file: dict[str, Any] = Field(
        description="Save as a .share file for a Delta Sharing client; it is never shown again."
    )
