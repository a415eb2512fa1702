"""Maps the hub's error hierarchy (and framework errors) to the one JSON error shape."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from civicshare.errors import CivicshareError

log = logging.getLogger("civicshare.api")

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def error_response(error: CivicshareError, *, request_id: str | None) -> JSONResponse:
    body = error.to_dict()
    body["error"]["request_id"] = request_id
    headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
    return JSONResponse(body, status_code=error.status, headers=headers)


def _request_id(request: Request) -> str | None:
    value = request.scope.get("state", {}).get("request_id")
    return value if isinstance(value, str) else None


def _json(status: int, code: str, message: str, details: Any, request: Request) -> JSONResponse:
    body = {
        "error": {
            "code": code,
            "message": message,
            "details": details,
            "request_id": _request_id(request),
        }
    }
    return JSONResponse(body, status_code=status)


def _validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    # The offending input is left out: it may be a password or a personal value.
    return [
        {"loc": list(error.get("loc", ())), "msg": error.get("msg", ""), "type": error.get("type")}
        for error in exc.errors()
    ]


def _wants_page(request: Request) -> bool:
    """A browser asking for a portal address gets an HTML error page, never JSON."""
    path = request.url.path
    portal = not path.startswith(("/api/", "/delta-sharing", "/healthz", "/readyz", "/static/"))
    return portal and "text/html" in request.headers.get("accept", "")


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(CivicshareError)
    async def _hub_error(request: Request, exc: CivicshareError) -> JSONResponse:
        return error_response(exc, request_id=_request_id(request))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = _validation_details(exc)
        first = details[0] if details else {"loc": [], "msg": "invalid input"}
        where = ".".join(str(part) for part in first["loc"][1:]) or "request"
        message = f"{where}: {first['msg']}"
        return _json(422, "validation_error", message, details, request)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        if _wants_page(request):
            from civicshare.web.render import http_error_page

            return http_error_page(request, exc.status_code, code)
        return _json(exc.status_code, code, str(exc.detail), None, request)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error (request %s)", _request_id(request))
        return _json(500, "internal_error", "internal error", None, request)
