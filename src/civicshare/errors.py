"""The single error hierarchy of the hub.

Every error a service raises carries an HTTP status and a stable machine-readable ``code``.
Adapters (API, portal, CLI) render them; they never invent errors of their own. Messages must
never contain secrets or personal values: they end up in responses and logs.
"""

from __future__ import annotations

from typing import Any, ClassVar


class CivicshareError(Exception):
    """Base of all expected errors: a status, a stable code, a safe message, optional details."""

    status: ClassVar[int] = 500
    default_code: ClassVar[str] = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class BadRequest(CivicshareError):
    status = 400
    default_code = "bad_request"


class Unauthenticated(CivicshareError):
    status = 401
    default_code = "unauthenticated"


class Forbidden(CivicshareError):
    status = 403
    default_code = "forbidden"


class NotFound(CivicshareError):
    status = 404
    default_code = "not_found"


class Conflict(CivicshareError):
    status = 409
    default_code = "conflict"


class Gone(CivicshareError):
    status = 410
    default_code = "gone"


class PayloadTooLarge(CivicshareError):
    status = 413
    default_code = "payload_too_large"


class UnsupportedMediaType(CivicshareError):
    status = 415
    default_code = "unsupported_media_type"


class Invalid(CivicshareError):
    status = 422
    default_code = "invalid"


class RateLimited(CivicshareError):
    status = 429
    default_code = "rate_limited"


class ConfigurationError(CivicshareError):
    """The hub is mis-configured (missing key, unreadable home); it refuses to run."""

    status = 500
    default_code = "configuration_error"


class Unavailable(CivicshareError):
    status = 503
    default_code = "unavailable"


ERROR_STATUSES: tuple[type[CivicshareError], ...] = (
    BadRequest,
    Unauthenticated,
    Forbidden,
    NotFound,
    Conflict,
    Gone,
    PayloadTooLarge,
    UnsupportedMediaType,
    Invalid,
    RateLimited,
    ConfigurationError,
    Unavailable,
)
