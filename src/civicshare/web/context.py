"""Who is looking at a page: the hub, the logged-in actor (or the public) and the CSRF secret."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from civicshare.errors import Unauthenticated
from civicshare.hub import Hub
from civicshare.permissions import Actor
from civicshare.web import security
from civicshare.web import service as sessions


class LoginRequired(Unauthenticated):
    """The page needs a logged-in person; the portal answers with a redirect to the login."""

    default_code = "login_required"


@dataclass
class Visitor:
    hub: Hub
    request: Request
    actor: Actor | None
    session_secret: str | None
    csrf_secret: str
    csrf_is_new: bool
    cookies: security.CookiePolicy

    @property
    def csrf_token(self) -> str:
        return security.csrf_token(self.hub, self.csrf_secret)

    @contextmanager
    def unit(self) -> Iterator[Session]:
        """The page's transaction: committed when the block succeeds."""
        with self.hub.db.session() as db:
            yield db

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only unit of work, for pages that neither write nor audit."""
        with self.hub.db.read_session() as db:
            yield db

    def require_actor(self) -> Actor:
        if self.actor is None:
            raise LoginRequired("please log in to see this page")
        return self.actor

    async def check_csrf(self) -> None:
        """Refuse a POST whose form (or htmx header) lacks the token of this browser."""
        submitted = self.request.headers.get(security.CSRF_HEADER)
        if submitted is None:
            form = await self.request.form()
            value = form.get(security.CSRF_FIELD)
            submitted = value if isinstance(value, str) else None
        security.check_csrf(
            self.hub,
            self.request,
            secret=None if self.csrf_is_new else self.csrf_secret,
            submitted=submitted,
        )


def _logged_in(hub: Hub, secret: str) -> Actor | None:
    """The session's actor, looked up without the write turn unless the session needs a write."""
    with hub.db.read_session() as db:
        actor, settled = sessions.resolve_read_only(db=db, secret=secret)
    if settled:
        return actor
    with hub.db.session() as db:
        return sessions.resolve(db=db, secret=secret)


def get_visitor(request: Request) -> Visitor:
    hub: Hub = request.app.state.hub
    session_secret = request.cookies.get(security.SESSION_COOKIE) or None
    actor = None
    if session_secret:
        actor = _logged_in(hub, session_secret)
        if actor is None:
            session_secret = None
    csrf_secret = request.cookies.get(security.CSRF_COOKIE) or ""
    visitor = Visitor(
        hub=hub,
        request=request,
        actor=actor,
        session_secret=session_secret,
        csrf_secret=csrf_secret or security.new_csrf_secret(),
        csrf_is_new=not csrf_secret,
        cookies=security.CookiePolicy.for_request(hub, request),
    )
    # The error pages rendered outside the handler still show who is logged in.
    request.state.visitor = visitor
    return visitor


async def get_form_visitor(request: Request) -> Visitor:
    """For POST handlers: the visitor, after the CSRF check passed."""
    visitor = get_visitor(request)
    await visitor.check_csrf()
    return visitor


VisitorDep = Annotated[Visitor, Depends(get_visitor)]
FormVisitorDep = Annotated[Visitor, Depends(get_form_visitor)]
