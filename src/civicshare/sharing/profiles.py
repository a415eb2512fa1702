"""Share profiles: issuing, listing, revoking, and authenticating Delta Sharing recipients."""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from civicshare import crypto
from civicshare.agency.models import Agency, Role
from civicshare.audit import service as audit
from civicshare.db import utcnow
from civicshare.errors import NotFound, Unauthenticated
from civicshare.permissions import Action, Actor, authorize
from civicshare.sharing.models import (
    PROFILE_TOKEN_PREFIX,
    ProfileFile,
    ShareProfile,
    ShareProfileCreate,
)

OPEN_DATA_SHARE = "open_data"
DEFAULT_PROFILE_DAYS = 90
# Writing last_used_at on every request would turn each read into a write; once a minute is enough.
LAST_USED_RESOLUTION = dt.timedelta(seconds=60)


@dataclass(frozen=True)
class Recipient:
    """The principal behind a share profile, as the policy engine sees it."""

    profile_id: str
    agreement_id: int | None
    actor: Actor


def share_name(agreement_id: int | None) -> str:
    return OPEN_DATA_SHARE if agreement_id is None else f"agreement_{agreement_id}"


def new_profile_token() -> str:
    return PROFILE_TOKEN_PREFIX + secrets.token_urlsafe(crypto.KEY_BYTES)


def issue_profile(
    *,
    db: Session,
    actor: Actor,
    data: ShareProfileCreate,
    agreement_id: int | None,
    recipient_agency_id: int | None,
    ends_at: dt.datetime | None,
) -> tuple[ShareProfile, str]:
    """Store a new profile (its token hashed) and return it with the token, shown only once.

    The caller has authorised the actor for the agreement; the profile never outlives it.
    """
    now = utcnow()
    days = data.expires_in_days or DEFAULT_PROFILE_DAYS
    expires_at = now + dt.timedelta(days=days)
    if ends_at is not None:
        expires_at = min(expires_at, ends_at)
    secret = new_profile_token()
    profile = ShareProfile(
        public_id="shp_" + secrets.token_hex(8),
        agreement_id=agreement_id,
        recipient_agency_id=recipient_agency_id,
        name=data.name,
        token_hash=crypto.hash_token(secret),
        created_by=actor.email,
        expires_at=expires_at,
    )
    db.add(profile)
    db.flush()
    audit.record(
        db,
        actor=actor,
        action="sharing.profile_create",
        agency=actor.agency_slug,
        resource=f"share_profile:{profile.public_id}",
        agreement=str(agreement_id) if agreement_id is not None else None,
        details={"share": share_name(agreement_id), "expires_at": expires_at.isoformat()},
    )
    return profile, secret


def issue_open_data_profile(
    *, db: Session, actor: Actor, data: ShareProfileCreate
) -> tuple[ShareProfile, str]:
    """A profile for the open-data share alone: public datasets, for anyone with an account."""
    authorize(actor, Action.open_data_profile_create)
    return issue_profile(
        db=db,
        actor=actor,
        data=data,
        agreement_id=None,
        recipient_agency_id=actor.agency_id,
        ends_at=None,
    )


def profile_file(profile: ShareProfile, secret: str, *, endpoint: str) -> dict[str, str | int]:
    expiry = profile.expires_at
    expiration = (
        expiry.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        if expiry
        else None
    )
    file = ProfileFile(endpoint=endpoint, bearer_token=secret, expiration_time=expiration)
    return file.as_file()


def get_profile(*, db: Session, public_id: str) -> ShareProfile:
    profile = db.scalar(select(ShareProfile).where(ShareProfile.public_id == public_id))
    if profile is None:
        raise NotFound(f"no share profile '{public_id}'", code="share_profile_not_found")
    return profile


def list_profiles(
    *, db: Session, actor: Actor, agreement_id: int | None = None
) -> list[ShareProfile]:
    """Profiles the actor created, or all of an agreement's (the caller authorised that)."""
    query = select(ShareProfile).order_by(ShareProfile.created_at, ShareProfile.id)
    if agreement_id is not None:
        return list(db.scalars(query.where(ShareProfile.agreement_id == agreement_id)))
    if actor.is_admin:
        return list(db.scalars(query))
    return list(db.scalars(query.where(ShareProfile.created_by == actor.email)))


def revoke_profile(*, db: Session, actor: Actor, profile: ShareProfile) -> ShareProfile:
    """Revoke at once (the caller authorised the actor for the profile's agreement)."""
    if profile.revoked_at is None:
        profile.revoked_at = utcnow()
        audit.record(
            db,
            actor=actor,
            action="sharing.profile_revoke",
            resource=f"share_profile:{profile.public_id}",
            agreement=str(profile.agreement_id) if profile.agreement_id is not None else None,
        )
    return profile


def revoke_own_profile(*, db: Session, actor: Actor, public_id: str) -> ShareProfile:
    profile = get_profile(db=db, public_id=public_id)
    if profile.created_by != actor.email:
        authorize(actor, Action.share_profile_manage)
    return revoke_profile(db=db, actor=actor, profile=profile)


_PROBLEMS = {
    "unknown": "the bearer token is not a valid share profile token",
    "revoked": "the share profile has been revoked",
    "expired": "the share profile has expired",
}


def authenticate_recipient(*, db: Session, secret: str) -> Recipient:
    """Resolve a profile token to its recipient; failures are audited (never the token)."""
    profile = db.scalar(
        select(ShareProfile).where(ShareProfile.token_hash == crypto.hash_token(secret))
    )
    now = utcnow()
    problem = _profile_problem(profile, secret, now)
    if problem is not None or profile is None:
        reason = problem or "unknown"
        audit.record(
            db,
            actor=None,
            action="sharing.auth_failed",
            outcome="denied",
            reason=reason,
            resource=f"share_profile:{profile.public_id}" if profile else None,
        )
        raise Unauthenticated(_PROBLEMS[reason], code="invalid_token")
    if profile.last_used_at is None or now - profile.last_used_at > LAST_USED_RESOLUTION:
        profile.last_used_at = now
    return Recipient(
        profile_id=profile.public_id,
        agreement_id=profile.agreement_id,
        actor=recipient_actor(db, profile),
    )


def _profile_problem(profile: ShareProfile | None, secret: str, now: dt.datetime) -> str | None:
    if profile is None or not crypto.token_matches(secret, profile.token_hash):
        return "unknown"
    if profile.revoked_at is not None:
        return "revoked"
    if profile.expires_at is not None and profile.expires_at <= now:
        return "expired"
    return None


def recipient_actor(db: Session, profile: ShareProfile) -> Actor:
    """The recipient as an analyst of its agency, identified by the profile in audit records."""
    agency = db.get(Agency, profile.recipient_agency_id) if profile.recipient_agency_id else None
    return Actor(
        email=f"{profile.public_id}@share-profile",
        role=Role.analyst,
        agency_id=agency.id if agency else None,
        agency_slug=agency.slug if agency else None,
        kind="share_recipient",
        token_id=profile.public_id,
    )
