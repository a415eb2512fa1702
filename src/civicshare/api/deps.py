"""Request context: the hub, the authenticated actor and a unit of work per request."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from civicshare.agency import service as agency_service
from civicshare.errors import Unauthenticated
from civicshare.hub import Hub
from civicshare.permissions import Actor

bearer = HTTPBearer(auto_error=False, description="API token: `Authorization: Bearer <token>`")


def get_hub(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


@dataclass
class Context:
    hub: Hub
    actor: Actor
    request_id: str | None

    @contextmanager
    def unit(self) -> Iterator[Session]:
        """The request's transaction: committed when the handler's block succeeds."""
        with self.hub.db.session() as db:
            yield db

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only unit of work, for handlers that neither write nor audit."""
        with self.hub.db.read_session() as db:
            yield db


def authenticate(hub: Hub, credentials: HTTPAuthorizationCredentials | None) -> Actor:
    if credentials is None or not credentials.credentials:
        raise Unauthenticated("an API token is required (Authorization: Bearer <token>)")
    with hub.db.read_session() as db:
        actor = agency_service.authenticate_token_read_only(db=db, secret=credentials.credentials)
    if actor is not None:
        return actor
    failure: Unauthenticated | None = None
    # Its own transaction, committed even when authentication fails, so the failure is audited.
    with hub.db.session() as db:
        try:
            return agency_service.authenticate_token(db=db, secret=credentials.credentials)
        except Unauthenticated as exc:
            failure = exc
    raise failure


def get_context(
    request: Request,
    hub: Annotated[Hub, Depends(get_hub)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Context:
    actor = authenticate(hub, credentials)
    request_id = request.scope.get("state", {}).get("request_id")
    return Context(hub=hub, actor=actor, request_id=request_id)


def get_optional_context(
    request: Request,
    hub: Annotated[Hub, Depends(get_hub)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Context | None:
    """For public endpoints that show more to authenticated callers."""
    if credentials is None:
        return None
    return get_context(request, hub, credentials)


Ctx = Annotated[Context, Depends(get_context)]
OptionalCtx = Annotated[Context | None, Depends(get_optional_context)]
HubDep = Annotated[Hub, Depends(get_hub)]
