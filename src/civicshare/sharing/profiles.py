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
from civicshare.errors import Conflict, Forbidden, Invalid, NotFound, Unauthenticated
from civicshare.permissions import Action, Actor, authorize
from civicshare.policy import service as policy
from civicshare.policy.models import Agreement, State
from civicshare.sharing.models import (
    OPEN_DATA_SHARE,
    PROFILE_TOKEN_PREFIX,
    ProfileFile,
    ShareProfile,
    ShareProfileCreate,
    share_name,
)

__all__ = ["OPEN_DATA_SHARE", "Recipient", "share_name"]

DEFAULT_PROFILE_DAYS = 90
# Writing last_used_at on every request would turn each read into a write; once a minute is enough.
LAST_USED_RESOLUTION = dt.timedelta(seconds=60)


@dataclass(frozen=True)
class Recipient:
    """The principal behind a share profile, as the policy engine sees it."""

    profile_id: str
    agreement: str | None  # the agreement's public id; None for an open-data profile
    history: bool
    actor: Actor

    @property
    def share(self) -> str:
        return share_name(self.agreement)


def new_profile_token() -> str:
    return PROFILE_TOKEN_PREFIX + secrets.token_urlsafe(crypto.KEY_BYTES)


def issue_profile(
    *,
    db: Session,
    actor: Actor,
    data: ShareProfileCreate,
    agreement: Agreement | None,
    recipient_agency_id: int | None,
) -> tuple[ShareProfile, str]:
    """Store a new profile (its token hashed) and return it with the token, shown only once.

    The caller has authorised the actor for the agreement; the profile never outlives it.
    """
    now = utcnow()
    expires_at = now + dt.timedelta(days=data.expires_in_days or DEFAULT_PROFILE_DAYS)
    if agreement is not None:
        expires_at = min(expires_at, agreement.valid_until)
    secret = new_profile_token()
    profile = ShareProfile(
        public_id="shp_" + secrets.token_hex(8),
        agreement=agreement,
        recipient_agency_id=recipient_agency_id,
        recipient_email=str(data.recipient_email).lower() if data.recipient_email else None,
        history=data.history or agreement is None,
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
        agency=agreement.provider.slug if agreement else actor.agency_slug,
        resource=f"share_profile:{profile.public_id}",
        agreement=agreement.public_id if agreement else None,
        purpose=agreement.purpose if agreement else None,
        details={
            "share": share_name(agreement.public_id if agreement else None),
            "history": profile.history,
            "expires_at": expires_at.isoformat(),
        },
    )
    return profile, secret


def issue_agreement_profile(
    *, db: Session, actor: Actor, agreement_id: str, data: ShareProfileCreate
) -> tuple[ShareProfile, str]:
    """A profile for an agreement's share, issued by the provider agency's steward."""
    agreement = policy.get_agreement(db=db, actor=actor, agreement_id=agreement_id)
    authorize(actor, Action.share_profile_create, agency_id=agreement.provider_agency_id)
    state = agreement.state()
    if state not in {State.active, State.approved}:
        raise Conflict(
            f"agreement {agreement.public_id} is {state.value}; only approved agreements are "
            "shared",
            code="agreement_not_approved",
        )
    if agreement.aggregate_only:
        raise Invalid(
            f"agreement {agreement.public_id} allows aggregate queries only, which Delta Sharing "
            "cannot carry (it hands out rows); recipients query it through the hub instead",
            code="aggregate_only_not_shareable",
        )
    if data.history and not agreement.allow_history:
        raise Invalid(
            f"agreement {agreement.public_id} shares the current version only; a profile with "
            "history needs an agreement that allows it",
            code="history_not_allowed",
        )
    named = [email.lower() for email in agreement.recipient_users or []]
    chosen = str(data.recipient_email).lower() if data.recipient_email else None
    if named and chosen not in named:
        raise Invalid(
            "this agreement names its recipient users: give recipient_email, one of them",
            code="recipient_required",
            details={"recipient_users": named},
        )
    return issue_profile(
        db=db,
        actor=actor,
        data=data,
        agreement=agreement,
        recipient_agency_id=agreement.recipient_agency_id,
    )


def issue_open_data_profile(
    *, db: Session, actor: Actor, data: ShareProfileCreate
) -> tuple[ShareProfile, str]:
    """A profile for the open-data share alone: public datasets, for anyone with an account."""
    authorize(actor, Action.open_data_profile_create)
    return issue_profile(
        db=db, actor=actor, data=data, agreement=None, recipient_agency_id=actor.agency_id
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
    *, db: Session, actor: Actor, agreement_id: str | None = None
) -> list[ShareProfile]:
    """An agreement's profiles (its provider's stewards), or the ones the actor created."""
    query = select(ShareProfile).order_by(ShareProfile.created_at, ShareProfile.id)
    if agreement_id is not None:
        agreement = policy.get_agreement(db=db, actor=actor, agreement_id=agreement_id)
        authorize(actor, Action.share_profile_manage, agency_id=agreement.provider_agency_id)
        return list(db.scalars(query.where(ShareProfile.agreement_id == agreement.id)))
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
            agreement=profile.agreement.public_id if profile.agreement else None,
        )
    return profile


def revoke_own_profile(*, db: Session, actor: Actor, public_id: str) -> ShareProfile:
    profile = get_profile(db=db, public_id=public_id)
    if profile.created_by != actor.email:
        provider = profile.agreement.provider_agency_id if profile.agreement else None
        authorize(actor, Action.share_profile_manage, agency_id=provider)
    return revoke_profile(db=db, actor=actor, profile=profile)


_PROBLEMS = {
    "unknown": "the bearer token is not a valid share profile token",
    "revoked": "the share profile has been revoked",
    "expired": "the share profile has expired",
}


def authenticate_recipient(*, db: Session, secret: str) -> Recipient:
    """Resolve a profile token to its recipient; failures are audited (never the token).

    A bad, revoked or expired token is ``Unauthenticated``; a token whose agreement is no
    longer active (revoked, expired) is ``Forbidden``.
    """
    profile = db.scalar(
        select(ShareProfile).where(ShareProfile.token_hash == crypto.hash_token(secret))
    )
    if profile is None or not crypto.token_matches(secret, profile.token_hash):
        _record_denial(db, None, "unknown")
        raise Unauthenticated(_PROBLEMS["unknown"], code="invalid_token")
    recipient = live_recipient(db=db, profile=profile)
    now = utcnow()
    if profile.last_used_at is None or now - profile.last_used_at > LAST_USED_RESOLUTION:
        profile.last_used_at = now
    return recipient


def live_recipient(
    *, db: Session, profile: ShareProfile, denied_action: str = "sharing.auth_failed"
) -> Recipient:
    """The profile's recipient if the profile and its agreement are still in force.

    A refusal is recorded as a denied ``denied_action``: the call's own action where the
    refusal is that call's only record (a file download).
    """
    now = utcnow()
    problem = None
    if profile.revoked_at is not None:
        problem = "revoked"
    elif profile.expires_at is not None and profile.expires_at <= now:
        problem = "expired"
    if problem is not None:
        _record_denial(db, profile, problem, denied_action)
        raise Unauthenticated(_PROBLEMS[problem], code="invalid_token")
    agreement = profile.agreement
    if agreement is not None:
        state = agreement.state(now)
        if state is not State.active:
            _record_denial(db, profile, f"agreement_{state.value}", denied_action)
            raise Forbidden(
                f"agreement {agreement.public_id} is {state.value}: its share is closed",
                code=f"agreement_{state.value}",
            )
    return Recipient(
        profile_id=profile.public_id,
        agreement=agreement.public_id if agreement else None,
        # The agreement bounds what any of its profiles may read.
        history=profile.history and (agreement is None or agreement.allow_history),
        actor=recipient_actor(db, profile),
    )


def _record_denial(
    db: Session, profile: ShareProfile | None, reason: str, action: str = "sharing.auth_failed"
) -> None:
    audit.record(
        db,
        actor=None,
        action=action,
        outcome="denied",
        reason=reason,
        resource=f"share_profile:{profile.public_id}" if profile else None,
        agreement=profile.agreement.public_id if profile and profile.agreement else None,
    )


def recipient_actor(db: Session, profile: ShareProfile) -> Actor:
    """The recipient as an analyst of its agency (as the named recipient user, if any)."""
    agency = db.get(Agency, profile.recipient_agency_id) if profile.recipient_agency_id else None
    return Actor(
        email=profile.recipient_email or f"{profile.public_id}@share-profile",
        role=Role.analyst,
        agency_id=agency.id if agency else None,
        agency_slug=agency.slug if agency else None,
        kind="share_recipient",
        token_id=profile.public_id,
    )
