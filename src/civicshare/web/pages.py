"""The portal's pages: home, login and logout. Domain pages live in modules of their own."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Response

from civicshare.errors import Unauthenticated
from civicshare.web import security
from civicshare.web import service as sessions
from civicshare.web.context import FormVisitorDep, VisitorDep
from civicshare.web.forms import FieldErrors
from civicshare.web.render import PortalRoute, redirect, render

router = APIRouter(route_class=PortalRoute, include_in_schema=False)


@router.get("/")
def home(visitor: VisitorDep) -> Response:
    return render(visitor, "home.html", {})


@router.get("/login")
def login_form(visitor: VisitorDep, next: str = "/") -> Response:
    if visitor.actor is not None:
        return redirect(visitor, safe_next(next))
    return render(visitor, "login.html", {"email": "", "next": safe_next(next), "errors": {}})


@router.post("/login")
def login(
    visitor: FormVisitorDep,
    email: Annotated[str, Form(max_length=320)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    errors = FieldErrors()
    if not email.strip():
        errors.add("email", "Enter your email address.")
    if not password:
        errors.add("password", "Enter your password.")
    failure: Unauthenticated | None = None
    secret = ""
    if not errors:
        # Committed even when the login fails: the failure (and any lockout) is audited.
        with visitor.unit() as db:
            try:
                _actor, secret = sessions.login(db=db, email=email, password=password)
            except Unauthenticated as exc:
                failure = exc
    if failure is not None:
        errors.add("form", failure.message)
    if errors:
        context = {"email": email, "next": safe_next(next), "errors": errors}
        return render(visitor, "login.html", context, status=422 if failure is None else 401)
    response = redirect(visitor, safe_next(next))
    max_age = int(sessions.SESSION_LIFETIME.total_seconds())
    visitor.cookies.set(response, security.SESSION_COOKIE, secret, max_age=max_age)
    # A fresh CSRF secret after login, so a token planted before it is worthless.
    visitor.cookies.set(response, security.CSRF_COOKIE, security.new_csrf_secret(), max_age=None)
    return response


@router.post("/logout")
def logout(visitor: FormVisitorDep) -> Response:
    if visitor.session_secret:
        with visitor.unit() as db:
            sessions.logout(db=db, secret=visitor.session_secret)
    response = redirect(visitor, "/")
    visitor.cookies.clear(response, security.SESSION_COOKIE)
    return response


def safe_next(target: str) -> str:
    """Only a path on this site: never another host (an open redirect)."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target
