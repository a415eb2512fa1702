"""Bearer-token authentication: read-only when nothing needs writing, audited when it fails."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
from fastapi.security import HTTPAuthorizationCredentials

from civicshare.agency import service as agency
from civicshare.agency.models import ApiToken, Role, TokenCreate
from civicshare.api.deps import authenticate
from civicshare.audit.models import AuditEntry
from civicshare.db import utcnow
from civicshare.errors import Unauthenticated
from civicshare.hub import Hub
from civicshare.permissions import CLI_ADMIN
from tests.support.concurrency import finishes_within, write_held
from tests.support.datasets import person


def _token(hub: Hub) -> tuple[str, str]:
    with hub.db.session() as db:
        actor = person(db, "health", Role.analyst)
        token, secret = agency.create_token(
            db=db, actor=CLI_ADMIN, data=TokenCreate(user=actor.email), default_ttl_days=1
        )
        return token.public_id, secret


def _bearer(secret: str) -> HTTPAuthorizationCredentials:
    return HTTPAuthorizationCredentials(scheme="Bearer", credentials=secret)


def _last_used(hub: Hub, public_id: str) -> dt.datetime | None:
    with hub.db.session() as db:
        token = db.scalar(sa.select(ApiToken).where(ApiToken.public_id == public_id))
        assert token is not None
        return token.last_used_at


def test_a_recently_used_token_authenticates_without_waiting_for_writers(hub: Hub) -> None:
    public_id, secret = _token(hub)
    assert _last_used(hub, public_id) is None
    first = authenticate(hub, _bearer(secret))  # first use: recorded, in a writing session
    assert first.token_id == public_id
    assert _last_used(hub, public_id) is not None
    untouched = sa.update(ApiToken).where(ApiToken.public_id == "none").values(name="x")
    with write_held(hub.db, lambda db: db.execute(untouched)):
        again = finishes_within(10, lambda: authenticate(hub, _bearer(secret)))
    assert again.token_id == public_id


def test_a_stale_last_use_is_refreshed(hub: Hub) -> None:
    public_id, secret = _token(hub)
    long_ago = utcnow() - dt.timedelta(hours=3)
    with hub.db.session() as db:
        db.execute(
            sa.update(ApiToken).where(ApiToken.public_id == public_id).values(last_used_at=long_ago)
        )
    authenticate(hub, _bearer(secret))
    refreshed = _last_used(hub, public_id)
    assert refreshed is not None
    assert refreshed > long_ago + dt.timedelta(hours=2)


@pytest.mark.parametrize("revoke", [True, False])
def test_refused_tokens_are_audited(hub: Hub, revoke: bool) -> None:
    public_id, secret = _token(hub)
    if revoke:
        with hub.db.session() as db:
            agency.revoke_token(db=db, actor=CLI_ADMIN, token_id=public_id)
    presented = secret if revoke else secret[:-2] + "xx"
    with pytest.raises(Unauthenticated):
        authenticate(hub, _bearer(presented))
    with hub.db.session() as db:
        last = db.scalars(sa.select(AuditEntry).order_by(AuditEntry.index.desc())).first()
        assert last is not None
        assert (last.action, last.outcome) == ("auth.token_failed", "denied")
