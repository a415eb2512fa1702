"""Rendering pages: the template environment, security headers and HTML error pages."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from civicshare import __version__
from civicshare.errors import CivicshareError, Unauthenticated
from civicshare.permissions import Actor
from civicshare.web import security
from civicshare.web.context import Visitor

log = logging.getLogger("civicshare.web")
HERE = Path(__file__).parent
templates = Jinja2Templates(
    env=Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True),
        undefined=StrictUndefined,
    )
)
templates.env.globals["version"] = __version__

# Scripts come only from the hub itself (everything is vendored); no inline script, no eval.
# Inline *styles* are allowed: Vega's SVG renderer writes style attributes on the chart's
# elements. Styles cannot run code, so scripts stay locked down.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


# Sections of the portal a logged-in person sees in the main navigation, with who sees them.
# Each page module adds its entry when it is mounted (see ``portal.mount_portal``).
NAV_SECTIONS: list[tuple[str, str, Callable[[Actor], bool]]] = []


def navigation(actor: Actor | None) -> list[tuple[str, str]]:
    if actor is None:
        return []
    return [(href, label) for href, label, shown in NAV_SECTIONS if shown(actor)]


def render(
    visitor: Visitor, template: str, context: dict[str, Any], *, status: int = 200
) -> HTMLResponse:
    """A full page, or only its main block when htmx asks for a fragment it can swap in."""
    page = {
        "visitor": visitor,
        "actor": visitor.actor,
        "csrf_token": visitor.csrf_token,
        "nav_links": navigation(visitor.actor),
    }
    response: HTMLResponse = templates.TemplateResponse(
        visitor.request, template, {**page, **context}, status_code=status
    )
    remember_csrf(visitor, response)
    return response


def remember_csrf(visitor: Visitor, response: Response) -> None:
    if visitor.csrf_is_new:
        visitor.cookies.set(response, security.CSRF_COOKIE, visitor.csrf_secret, max_age=None)


def redirect(visitor: Visitor, url: str) -> Response:
    """303 after a POST; htmx requests get HX-Redirect so the whole page moves."""
    if visitor.request.headers.get("hx-request") == "true":
        response: Response = Response(status_code=204, headers={"HX-Redirect": url})
    else:
        response = RedirectResponse(url, status_code=303)
    remember_csrf(visitor, response)
    return response


def error_page(request: Request, error: CivicshareError, *, status: int | None = None) -> Response:
    if isinstance(error, Unauthenticated) and error.code in {"login_required"}:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
    visitor: Visitor | None = getattr(request.state, "visitor", None)
    status = status or error.status
    context = {"error": error, "status": status}
    if visitor is None:
        bare: Response = templates.TemplateResponse(
            request,
            "error.html",
            {**context, "visitor": None, "actor": None, "csrf_token": "", "nav_links": []},
            status_code=status,
        )
        return bare
    return render(visitor, "error.html", context, status=status)


def http_error_page(request: Request, status: int, code: str) -> Response:
    """The portal's page for a framework error (an unknown address, a wrong method)."""
    from civicshare.errors import BadRequest, NotFound

    if status == 404:
        error: CivicshareError = NotFound("there is no page at this address", code=code)
    else:
        error = BadRequest("this request cannot be answered", code=code)
    response = error_page(request, error, status=status)
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


class PortalRoute(APIRoute):
    """Routes whose errors become HTML pages (never the API's JSON) with security headers."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def portal_handler(request: Request) -> Response:
            try:
                response = await handler(request)
            except CivicshareError as exc:
                response = error_page(request, exc)
            except RequestValidationError:
                response = error_page(request, _bad_address())
            except Exception:
                log.exception("portal page failed: %s %s", request.method, request.url.path)
                response = error_page(request, _internal())
            for name, value in SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
            if getattr(request.state, "visitor", None) is not None and request.state.visitor.actor:
                response.headers.setdefault("Cache-Control", "no-store")
            return response

        return portal_handler


def _bad_address() -> CivicshareError:
    from civicshare.errors import BadRequest

    return BadRequest("this address is not valid", code="bad_request")


def _internal() -> CivicshareError:
    return CivicshareError("something went wrong on our side; the error was logged")
