"""Agencies, users and tokens: the service functions shared by API, portal and CLI."""

from __future__ import annotations

import datetime as dt
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from civicshare import crypto
from civicshare.agency.models import (
    Agency,
    AgencyCreate,
    ApiToken,
    PrincipalKind,
    Role,
    TokenCreate,
    User,
    UserCreate,
)
from civicshare.audit import service as audit
from civicshare.db import flush_or_conflict, utcnow
from civicshare.errors import Conflict, Invalid, NotFound, Unauthenticated
from civicshare.permissions import Action, Actor, authorize

MAX_FAILED_LOGINS = 5
LOCKOUT = dt.timedelta(minutes=15)
# Writing last_used_at on every request would turn each read into a write; once a minute is enough.
LAST_USED_RESOLUTION = dt.timedelta(seconds=60)

# ---------------------------------------------------------------------------- agencies


def create_agency(*, db: Session, actor: Actor, data: AgencyCreate) -> Agency:
    authorize(actor, Action.agency_create)
    if db.scalar(select(Agency.id).where(Agency.slug == data.slug)) is not None:
        raise Conflict(f"agency '{data.slug}' already exists", code="agency_exists")
    parent = get_agency(db=db, slug=data.parent) if data.parent else None
    agency = Agency(
        slug=data.slug,
        title=data.title,
        level=data.level.value,
        parent=parent,
        contact_name=data.contact_name,
        contact_email=str(data.contact_email) if data.contact_email else None,
    )
    db.add(agency)
    flush_or_conflict(db, f"agency '{data.slug}' already exists", code="agency_exists")
    audit.record(db, actor=actor, action="agency.create", agency=agency.slug, resource=agency.slug)
    return agency


def get_agency(*, db: Session, slug: str) -> Agency:
    agency = db.scalar(select(Agency).where(Agency.slug == slug))
    if agency is None:
        raise NotFound(f"no agency '{slug}'", code="agency_not_found")
    return agency


def list_agencies(*, db: Session, actor: Actor) -> list[Agency]:
    authorize(actor, Action.agency_read)
    return list(db.scalars(select(Agency).order_by(Agency.slug)))


# ---------------------------------------------------------------------------- users


def create_user(*, db: Session, actor: Actor, data: UserCreate) -> User:
    agency = get_agency(db=db, slug=data.agency) if data.agency else None
    authorize(actor, Action.user_create, agency_id=agency.id if agency else None)
    if data.role is Role.admin and not actor.is_admin:
        authorize(actor, Action.agency_create)  # only admins make admins
    if data.role is not Role.admin and agency is None:
        raise Invalid(f"a {data.role.value} must belong to an agency", code="agency_required")
    if data.kind is PrincipalKind.service and data.password:
        raise Invalid("service accounts log in with tokens, not passwords", code="no_password")
    email = str(data.email).lower()
    if db.scalar(select(User.id).where(User.email == email)) is not None:
        raise Conflict(f"user '{email}' already exists", code="user_exists")
    user = User(
        email=email,
        display_name=data.display_name,
        kind=data.kind.value,
        role=data.role.value,
        agency=agency,
        password_hash=crypto.hash_password(data.password) if data.password else None,
    )
    db.add(user)
    flush_or_conflict(db, f"user '{email}' already exists", code="user_exists")
    audit.record(
        db,
        actor=actor,
        action="user.create",
        agency=agency.slug if agency else None,
        resource=f"user:{email}",
        details={"role": data.role.value, "kind": data.kind.value},
    )
    return user


def get_user(*, db: Session, email: str) -> User:
    user = db.scalar(select(User).where(User.email == email.lower()))
    if user is None:
        raise NotFound(f"no user '{email}'", code="user_not_found")
    return user


def list_users(*, db: Session, actor: Actor, agency: str | None = None) -> list[User]:
    query = select(User).order_by(User.email)
    if agency:
        target = get_agency(db=db, slug=agency)
        authorize(actor, Action.user_read, agency_id=target.id)
        return list(db.scalars(query.where(User.agency_id == target.id)))
    if actor.is_admin:
        return list(db.scalars(query))
    if actor.agency_id is not None:
        authorize(actor, Action.user_read, agency_id=actor.agency_id)
        return list(db.scalars(query.where(User.agency_id == actor.agency_id)))
    authorize(actor, Action.user_read)
    return []


def set_password(*, db: Session, actor: Actor, email: str, password: str) -> None:
    user = get_user(db=db, email=email)
    if actor.user_id != user.id:
        authorize(actor, Action.user_update, agency_id=user.agency_id)
    if len(password) < 12:
        raise Invalid("passwords must be at least 12 characters", code="password_too_short")
    user.password_hash = crypto.hash_password(password)
    user.failed_logins = 0
    user.locked_until = None
    audit.record(db, actor=actor, action="user.set_password", resource=f"user:{user.email}")


def actor_for(
    user: User, *, token: ApiToken | None = None, acting_admin: str | None = None
) -> Actor:
    return Actor(
        email=user.email,
        role=Role(user.role),
        user_id=user.id,
        agency_id=user.agency_id,
        agency_slug=user.agency.slug if user.agency else None,
        kind=user.kind,
        token_id=token.public_id if token else None,
        scopes=frozenset(token.scopes) if token and token.scopes is not None else None,
        acting_admin=acting_admin,
    )


def act_as(*, db: Session, admin: Actor, email: str) -> Actor:
    """The CLI administrator acting as a user; audit records show both."""
    user = get_user(db=db, email=email)
    if not user.is_active:
        raise Invalid(f"user '{email}' is deactivated", code="user_inactive")
    return actor_for(user, acting_admin=admin.email)


# ---------------------------------------------------------------------------- tokens


def create_token(
    *, db: Session, actor: Actor, data: TokenCreate, default_ttl_days: int
) -> tuple[ApiToken, str]:
    """Create a token and return it with its secret, which is never retrievable again."""
    owner = _token_owner(db=db, actor=actor, email=str(data.user) if data.user else None)
    secret = crypto.new_api_token()
    days = data.expires_in_days or default_ttl_days
    token = ApiToken(
        public_id="tok_" + secrets.token_hex(8),
        user=owner,
        name=data.name,
        token_hash=crypto.hash_token(secret),
        scopes=sorted(set(data.scopes)) if data.scopes is not None else None,
        expires_at=utcnow() + dt.timedelta(days=days),
    )
    db.add(token)
    db.flush()
    audit.record(
        db,
        actor=actor,
        action="token.create",
        agency=owner.agency.slug if owner.agency else None,
        resource=f"token:{token.public_id}",
        details={"user": owner.email, "expires_in_days": days},
    )
    return token, secret


def _token_owner(*, db: Session, actor: Actor, email: str | None) -> User:
    if email is None or email.lower() == actor.email:
        authorize(actor, Action.token_create_own)
        if actor.user_id is None:
            raise Invalid("the CLI administrator must name the token's user", code="user_required")
        return db.get_one(User, actor.user_id)
    authorize(actor, Action.token_manage_any)
    return get_user(db=db, email=email)


def list_tokens(*, db: Session, actor: Actor, email: str | None = None) -> list[ApiToken]:
    query = select(ApiToken).order_by(ApiToken.created_at, ApiToken.id)
    if email is not None and email.lower() != actor.email:
        authorize(actor, Action.token_manage_any)
        return list(db.scalars(query.where(ApiToken.user_id == get_user(db=db, email=email).id)))
    if email is None and actor.is_admin:
        return list(db.scalars(query))
    return list(db.scalars(query.where(ApiToken.user_id == actor.user_id)))


def revoke_token(*, db: Session, actor: Actor, token_id: str) -> ApiToken:
    token = db.scalar(select(ApiToken).where(ApiToken.public_id == token_id))
    if token is None:
        raise NotFound(f"no token '{token_id}'", code="token_not_found")
    if token.user_id != actor.user_id:
        authorize(actor, Action.token_manage_any)
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        audit.record(
            db,
            actor=actor,
            action="token.revoke",
            agency=token.user.agency.slug if token.user.agency else None,
            resource=f"token:{token.public_id}",
        )
    return token


def authenticate_token(*, db: Session, secret: str) -> Actor:
    """Resolve a bearer token to its actor. Failures are audited (without the token)."""
    token = _token_by_secret(db, secret)
    now = utcnow()
    reason = _token_problem(token, secret, now)
    if reason is not None or token is None:
        _record_auth_failure(db, reason=reason or "unknown_token", token=token)
        raise Unauthenticated(_TOKEN_MESSAGES[reason or "unknown_token"], code="invalid_token")
    if _use_unrecorded(token, now):
        token.last_used_at = now
    return actor_for(token.user, token=token)


def authenticate_token_read_only(*, db: Session, secret: str) -> Actor | None:
    """The actor of a valid token when nothing needs writing, else None.

    The common case of every API request: a valid token used within the last
    ``LAST_USED_RESOLUTION``. It can be answered from a read-only session, which never waits for
    the write turn. None means ``authenticate_token`` must decide, in a writing session: a
    failure is audited there, and a stale ``last_used_at`` refreshed.
    """
    token = _token_by_secret(db, secret)
    now = utcnow()
    if token is None or _token_problem(token, secret, now) is not None:
        return None
    if _use_unrecorded(token, now):
        return None
    return actor_for(token.user, token=token)


def _token_by_secret(db: Session, secret: str) -> ApiToken | None:
    return db.scalar(select(ApiToken).where(ApiToken.token_hash == crypto.hash_token(secret)))


def _use_unrecorded(token: ApiToken, now: dt.datetime) -> bool:
    """Whether this use should update ``last_used_at`` (kept to ``LAST_USED_RESOLUTION``)."""
    return token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION


_TOKEN_MESSAGES = {
    "unknown_token": "the bearer token is not valid",
    "revoked": "the bearer token has been revoked",
    "expired": "the bearer token has expired",
    "inactive_user": "the token's user is deactivated",
}


def _token_problem(token: ApiToken | None, secret: str, now: dt.datetime) -> str | None:
    # The lookup was by hash; the constant-time comparison guards against any timing leak there.
    if token is None or not crypto.token_matches(secret, token.token_hash):
        return "unknown_token"
    if token.revoked_at is not None:
        return "revoked"
    if token.expires_at is not None and token.expires_at <= now:
        return "expired"
    if not token.user.is_active:
        return "inactive_user"
    return None


def _record_auth_failure(db: Session, *, reason: str, token: ApiToken | None) -> None:
    audit.record(
        db,
        actor=None,
        action="auth.token_failed",
        outcome="denied",
        reason=reason,
        resource=f"token:{token.public_id}" if token else None,
    )


# ---------------------------------------------------------------------------- passwords


def authenticate_password(*, db: Session, email: str, password: str) -> Actor:
    """Check a portal login. Repeated failures lock the account for a while; all are audited."""
    user = db.scalar(select(User).where(User.email == email.strip().lower()))
    now = utcnow()
    if user is None or user.password_hash is None or not user.is_active:
        crypto.burn_password_check(password)
        _record_login_failure(db, user=None, reason="unknown_or_inactive")
        raise Unauthenticated("wrong email or password", code="login_failed")
    if user.locked_until is not None and user.locked_until > now:
        _record_login_failure(db, user=user, reason="locked")
        raise Unauthenticated(
            "too many failed logins; try again later",
            code="account_locked",
            details={"locked_until": user.locked_until.isoformat()},
        )
    if not crypto.verify_password(password, user.password_hash):
        user.failed_logins += 1
        locked = user.failed_logins >= MAX_FAILED_LOGINS
        if locked:
            user.locked_until = now + LOCKOUT
            user.failed_logins = 0
        _record_login_failure(db, user=user, reason="locked_out" if locked else "bad_password")
        raise Unauthenticated("wrong email or password", code="login_failed")
    user.failed_logins = 0
    user.locked_until = None
    actor = actor_for(user)
    audit.record(db, actor=actor, action="auth.login", agency=actor.agency_slug)
    return actor


def _record_login_failure(db: Session, *, user: User | None, reason: str) -> None:
    audit.record(
        db,
        actor=actor_for(user) if user else None,
        action="auth.login_failed",
        outcome="denied",
        reason=reason,
        agency=user.agency.slug if user and user.agency else None,
    )
