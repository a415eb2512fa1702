"""Portal sessions: opened by a password login, resolved per request, ended by logout."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from civicshare import crypto
from civicshare.agency import service as agency_service
from civicshare.agency.models import AgencyCreate, Role, UserCreate
from civicshare.audit.models import AuditEntry
from civicshare.errors import Unauthenticated
from civicshare.permissions import CLI_ADMIN
from civicshare.web import service as sessions
from civicshare.web.models import WebSession

PASSWORD = "correct horse battery"


@pytest.fixture
def steward(db: Session) -> str:
    agency_service.create_agency(
        db=db, actor=CLI_ADMIN, data=AgencyCreate(slug="health", title="Health")
    )
    email = "steward@health.example"
    agency_service.create_user(
        db=db,
        actor=CLI_ADMIN,
        data=UserCreate(
            email=email, display_name="S", role=Role.steward, agency="health", password=PASSWORD
        ),
    )
    return email


def test_login_stores_only_the_hash_and_resolves_to_the_user(db: Session, steward: str) -> None:
    actor, secret = sessions.login(db=db, email=steward.upper(), password=PASSWORD)
    row = db.scalars(select(WebSession)).one()
    assert row.token_hash == crypto.hash_token(secret)
    assert secret not in row.token_hash
    resolved = sessions.resolve(db=db, secret=secret)
    assert resolved is not None
    assert (resolved.email, resolved.role, resolved.agency_slug) == (
        steward,
        Role.steward,
        "health",
    )
    assert actor.user_id == resolved.user_id


def test_wrong_password_opens_no_session(db: Session, steward: str) -> None:
    with pytest.raises(Unauthenticated) as failure:
        sessions.login(db=db, email=steward, password="not the password")
    assert failure.value.code == "login_failed"
    assert db.scalars(select(WebSession)).all() == []


def test_unknown_secret_resolves_to_nobody(db: Session, steward: str) -> None:
    sessions.login(db=db, email=steward, password=PASSWORD)
    assert sessions.resolve(db=db, secret="made-up") is None


def test_expired_and_idle_sessions_end(db: Session, steward: str) -> None:
    _, expired = sessions.login(db=db, email=steward, password=PASSWORD)
    _, idle = sessions.login(db=db, email=steward, password=PASSWORD)
    rows = {row.token_hash: row for row in db.scalars(select(WebSession))}
    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    rows[crypto.hash_token(expired)].expires_at = past
    rows[crypto.hash_token(idle)].last_seen_at = past - sessions.IDLE_TIMEOUT
    db.flush()
    assert sessions.resolve(db=db, secret=expired) is None
    assert sessions.resolve(db=db, secret=idle) is None
    assert db.scalars(select(WebSession)).all() == []


def test_deactivated_user_loses_the_session(db: Session, steward: str) -> None:
    _, secret = sessions.login(db=db, email=steward, password=PASSWORD)
    agency_service.get_user(db=db, email=steward).is_active = False
    db.flush()
    assert sessions.resolve(db=db, secret=secret) is None


def test_logout_ends_the_session_and_is_audited(db: Session, steward: str) -> None:
    _, secret = sessions.login(db=db, email=steward, password=PASSWORD)
    sessions.logout(db=db, secret=secret)
    sessions.logout(db=db, secret=secret)  # twice is harmless
    assert sessions.resolve(db=db, secret=secret) is None
    actions = list(db.scalars(select(AuditEntry.action).order_by(AuditEntry.index)))
    assert actions.count("auth.logout") == 1
    assert actions.count("auth.login") == 1


def test_purge_removes_only_expired_sessions(db: Session, steward: str) -> None:
    _, old = sessions.login(db=db, email=steward, password=PASSWORD)
    _, live = sessions.login(db=db, email=steward, password=PASSWORD)
    row = db.scalars(
        select(WebSession).where(WebSession.token_hash == crypto.hash_token(old))
    ).one()
    row.expires_at = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    db.flush()
    assert sessions.purge_expired(db=db) == 1
    assert sessions.resolve(db=db, secret=live) is not None
