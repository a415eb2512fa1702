"""Portal sessions: start one after a password login, resolve it per request, end it."""

from __future__ import annotations

import datetime as dt
import secrets

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from civicshare import crypto
from civicshare.agency import service as agency_service
from civicshare.audit import service as audit
from civicshare.db import utcnow
from civicshare.permissions import Actor
from civicshare.web.models import WebSession

# A working day at most; an idle browser is logged out after an hour.
SESSION_LIFETIME = dt.timedelta(hours=8)
IDLE_TIMEOUT = dt.timedelta(hours=1)
# Touching last_seen_at on every page view would turn each read into a write.
LAST_SEEN_RESOLUTION = dt.timedelta(seconds=60)


def login(*, db: Session, email: str, password: str) -> tuple[Actor, str]:
    """Check the password (lockout and auditing happen there) and open a session.

    Returns the actor and the session secret for the cookie; only its hash is stored.
    """
    actor = agency_service.authenticate_password(db=db, email=email, password=password)
    secret = secrets.token_urlsafe(32)
    now = utcnow()
    db.add(
        WebSession(
            token_hash=crypto.hash_token(secret),
            user_id=actor.user_id,
            created_at=now,
            last_seen_at=now,
            expires_at=now + SESSION_LIFETIME,
        )
    )
    db.flush()
    return actor, secret


def resolve(*, db: Session, secret: str) -> Actor | None:
    """The actor of a live session, or None (expired, idle, deactivated or unknown)."""
    row = _session_row(db, secret)
    if row is None:
        return None
    now = utcnow()
    if _ended(row, now):
        db.delete(row)
        return None
    if now - row.last_seen_at > LAST_SEEN_RESOLUTION:
        row.last_seen_at = now
    return agency_service.actor_for(row.user)


def resolve_read_only(*, db: Session, secret: str) -> tuple[Actor | None, bool]:
    """Like ``resolve`` in a read-only session: (actor, True), or (None, False) when it must write.

    Most page views find a live session seen less than ``LAST_SEEN_RESOLUTION`` ago: nothing to
    write, so they need not take the database's write turn (SQLite has one). An unknown secret
    is settled too (None, True). An ended session (to delete) or a stale ``last_seen_at`` (to
    touch) is left to ``resolve``.
    """
    row = _session_row(db, secret)
    if row is None:
        return None, True
    now = utcnow()
    if _ended(row, now) or now - row.last_seen_at > LAST_SEEN_RESOLUTION:
        return None, False
    return agency_service.actor_for(row.user), True


def _session_row(db: Session, secret: str) -> WebSession | None:
    return db.scalar(select(WebSession).where(WebSession.token_hash == crypto.hash_token(secret)))


def _ended(row: WebSession, now: dt.datetime) -> bool:
    return row.expires_at <= now or now - row.last_seen_at > IDLE_TIMEOUT or not row.user.is_active


def logout(*, db: Session, secret: str) -> None:
    """End the session (idempotent) and record it."""
    row = db.scalar(select(WebSession).where(WebSession.token_hash == crypto.hash_token(secret)))
    if row is None:
        return
    actor = agency_service.actor_for(row.user)
    db.delete(row)
    audit.record(db, actor=actor, action="auth.logout", agency=actor.agency_slug)


def purge_expired(*, db: Session) -> int:
    """Delete sessions past their lifetime; returns how many."""
    now = utcnow()
    result = db.execute(delete(WebSession).where(WebSession.expires_at <= now))
    return int(getattr(result, "rowcount", 0) or 0)
