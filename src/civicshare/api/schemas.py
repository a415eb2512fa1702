"""Shapes shared by every API route (errors, pages)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: Any = None
    request_id: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in {
        400: "Bad request",
        401: "Missing, invalid, expired or revoked token",
        403: "Not permitted",
        404: "Not found",
        409: "Conflict with existing state",
        413: "Request body too large",
        422: "Invalid input",
        429: "Rate limited",
    }.items()
}
