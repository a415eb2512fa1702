"""ASGI middleware: request ids, access log without query strings, body size limits."""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Callable

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from civicshare.errors import PayloadTooLarge

log = logging.getLogger("civicshare.access")
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestIdMiddleware:
    """Gives every request an id (kept from the client if sane), echoed in X-Request-ID."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _SAFE_REQUEST_ID.fullmatch(incoming) else secrets.token_hex(8)
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            # The query string is left out on purpose: signed URLs carry secrets there.
            log.info(
                "%s %s %s %.1fms rid=%s",
                scope["method"],
                scope["path"],
                status,
                (time.perf_counter() - started) * 1000,
                request_id,
            )


class BodySizeLimitMiddleware:
    """Refuses bodies over the limit, by Content-Length up front or while streaming."""

    def __init__(self, app: ASGIApp, *, limit_for: Callable[[str], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _reject(scope, send, limit)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # An HTTPException, because FastAPI turns other errors raised while it
                    # parses a body into a generic 400.
                    raise HTTPException(413, detail=f"request body exceeds {limit} bytes")
            return message

        await self.app(scope, limited_receive, send)


async def _reject(scope: Scope, send: Send, limit: int) -> None:
    from civicshare.api.errors import error_response

    response = error_response(
        PayloadTooLarge(f"request body exceeds {limit} bytes", details={"limit": limit}),
        request_id=scope.get("state", {}).get("request_id"),
    )
    await response(scope, _drain, send)


async def _drain() -> Message:
    return {"type": "http.disconnect"}
