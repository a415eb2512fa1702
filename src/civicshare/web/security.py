"""Cookies and CSRF protection for the portal.

CSRF uses the signed double-submit pattern: every browser gets a random ``csrf`` cookie, and every
form carries ``HMAC(hub key, cookie)``. A page on another origin can make the browser send the
cookie but can neither read it nor compute the matching token. The session cookie is also
SameSite=Lax, and a cross-origin ``Origin`` header is refused outright.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from civicshare.errors import Forbidden
from civicshare.hub import Hub

SESSION_COOKIE = "cs_session"
CSRF_COOKIE = "cs_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
_CSRF_LABEL = b"web-csrf"


@dataclass(frozen=True)
class CookiePolicy:
    """How the portal's cookies are set: Secure whenever the hub is reached over TLS."""

    secure: bool

    @classmethod
    def for_request(cls, hub: Hub, request: Request) -> CookiePolicy:
        over_tls = request.url.scheme == "https" or hub.settings.public_url.startswith("https:")
        return cls(secure=over_tls)

    def set(self, response: Response, name: str, value: str, *, max_age: int | None) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path="/",
            secure=self.secure,
            httponly=True,
            samesite="lax" if name == SESSION_COOKIE else "strict",
        )

    def clear(self, response: Response, name: str) -> None:
        response.delete_cookie(
            name,
            path="/",
            secure=self.secure,
            httponly=True,
            samesite="lax" if name == SESSION_COOKIE else "strict",
        )


def new_csrf_secret() -> str:
    return secrets.token_urlsafe(32)


def csrf_token(hub: Hub, secret: str) -> str:
    """The form token that matches a browser's CSRF cookie."""
    key = hub.keys.derive(_CSRF_LABEL)
    return hmac.new(key, secret.encode(), hashlib.sha256).hexdigest()


def check_csrf(hub: Hub, request: Request, *, secret: str | None, submitted: str | None) -> None:
    """Refuse a state-changing request without a token matching the browser's cookie."""
    origin = request.headers.get("origin")
    if origin is not None and origin != _own_origin(request):
        raise Forbidden("cross-origin form submissions are refused", code="csrf_origin")
    if not secret or not submitted:
        raise Forbidden(
            "the form has expired or was not sent from this site; reload the page and retry",
            code="csrf_missing",
        )
    if not hmac.compare_digest(csrf_token(hub, secret), submitted):
        raise Forbidden(
            "the form has expired or was not sent from this site; reload the page and retry",
            code="csrf_invalid",
        )


def _own_origin(request: Request) -> str:
    host = request.headers.get("host", request.url.netloc)
    return f"{request.url.scheme}://{host}"
