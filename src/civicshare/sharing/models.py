"""Delta Sharing recipients: share profiles (bearer tokens scoped to one agreement)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict, EmailStr, Field
from sqlalchemy import Boolean, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from civicshare.db import Base, UTCDateTime, utcnow
from civicshare.policy.models import Agreement

PROFILE_TOKEN_PREFIX = "csds_"
OPEN_DATA_SHARE = "open_data"
SHARE_CREDENTIALS_VERSION = 1


class ShareProfile(Base):
    """A recipient's credential for the Delta Sharing endpoint.

    Scoped to one agreement (``agreement_id``), or to the open-data share only when it has none.
    Only the SHA-256 of the bearer token is stored; the token is shown once, in the profile file.
    """

    __tablename__ = "share_profile"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, index=True)
    agreement_id: Mapped[int | None] = mapped_column(
        ForeignKey("agreement.id", ondelete="CASCADE"), index=True, nullable=True
    )
    recipient_agency_id: Mapped[int | None] = mapped_column(
        ForeignKey("agency.id"), index=True, nullable=True
    )
    # The recipient user the policy engine sees (when the agreement names its recipient users).
    recipient_email: Mapped[str | None] = mapped_column(String(320), nullable=True)
    # Whether the recipient may read past versions and the change data feed (only ever true
    # when the agreement allows history; open-data profiles always may).
    history: Mapped[bool] = mapped_column(Boolean, default=False)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    created_by: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)

    agreement: Mapped[Agreement | None] = relationship(lazy="joined")


def share_name(agreement_public_id: str | None) -> str:
    """An agreement's share is named by the agreement's id; public datasets form ``open_data``."""
    return OPEN_DATA_SHARE if agreement_public_id is None else agreement_public_id.lower()


class ShareProfileCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="delta-sharing", min_length=1, max_length=100)
    expires_in_days: int | None = Field(
        default=None, gt=0, le=3650, description="Default: 90 days, never past the agreement's end"
    )
    history: bool = Field(
        default=False,
        description="Let the recipient read past versions (time travel) and the change data feed",
    )
    recipient_email: EmailStr | None = Field(
        default=None,
        description="The recipient user (required when the agreement names recipient users)",
    )


class ShareProfileRead(BaseModel):
    id: str
    name: str
    share: str
    agreement: str | None
    recipient_email: str | None
    history: bool
    created_by: str
    created_at: dt.datetime
    expires_at: dt.datetime | None
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None

    @classmethod
    def of(cls, profile: ShareProfile) -> ShareProfileRead:
        agreement = profile.agreement.public_id if profile.agreement else None
        return cls(
            id=profile.public_id,
            name=profile.name,
            share=share_name(agreement),
            agreement=agreement,
            recipient_email=profile.recipient_email,
            history=profile.history,
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
    profile_file: dict[str, Any] = Field(
        description="Save as a .share file for a Delta Sharing client; it is never shown again."
    )
