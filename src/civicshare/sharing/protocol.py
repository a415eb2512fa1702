"""The Delta Sharing wire format: NDJSON action lines, protocol errors, HTTP byte ranges.

Only the ``parquet`` response format is spoken; the server never answers with the
``delta-sharing-capabilities`` header, which tells clients so (PROTOCOL.md, "responseFormat").
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from civicshare.errors import CivicshareError

log = logging.getLogger("civicshare.sharing")

NDJSON = "application/x-ndjson; charset=utf-8"
TABLE_VERSION_HEADER = "Delta-Table-Version"
MIN_READER_VERSION = 1

ChangeAction = Literal["add", "cdf", "remove"]

# Error codes of the reference server (DeltaSharingService.scala) plus the usual 401/403 ones.
_STATUS_CODES: dict[int, str] = {
    400: "INVALID_PARAMETER_VALUE",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "RESOURCE_DOES_NOT_EXIST",
    409: "RESOURCE_ALREADY_EXISTS",
    413: "INVALID_PARAMETER_VALUE",
    416: "INVALID_PARAMETER_VALUE",
    422: "INVALID_PARAMETER_VALUE",
    429: "RATE_LIMIT_EXCEEDED",
}
UNSUPPORTED_OPERATION = "unsupported_operation"
MALFORMED_REQUEST = "malformed_request"


# ---------------------------------------------------------------------------- action lines


def protocol_line() -> dict[str, Any]:
    return {"protocol": {"minReaderVersion": MIN_READER_VERSION}}


def metadata_line(
    *,
    table_id: str,
    name: str,
    description: str | None,
    schema_string: str,
    configuration: dict[str, str],
    version: int | None = None,
    size: int | None = None,
    num_files: int | None = None,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "id": table_id,
        "name": name,
        "format": {"provider": "parquet"},
        "schemaString": schema_string,
        "partitionColumns": [],
        "configuration": configuration,
    }
    optional = {"description": description, "version": version, "size": size}
    metadata.update({key: value for key, value in optional.items() if value is not None})
    if num_files is not None:
        metadata["numFiles"] = num_files
    return {"metaData": metadata}


@dataclass(frozen=True)
class ServedFile:
    """One data file as listed to a recipient."""

    url: str
    id: str
    size: int
    expiration_ms: int
    stats: str | None = None
    version: int | None = None
    timestamp_ms: int | None = None

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "url": self.url,
            "id": self.id,
            "partitionValues": {},
            "size": self.size,
            "expirationTimestamp": self.expiration_ms,
        }
        if self.stats is not None:
            body["stats"] = self.stats
        if self.version is not None:
            body["version"] = self.version
        if self.timestamp_ms is not None:
            body["timestamp"] = self.timestamp_ms
        return body


def file_line(served: ServedFile) -> dict[str, Any]:
    return {"file": served.body()}


def change_line(action: ChangeAction, served: ServedFile) -> dict[str, Any]:
    return {action: served.body()}


def ndjson(lines: Iterable[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(line, separators=(",", ":")).encode() + b"\n" for line in lines)


def ndjson_response(lines: Iterable[dict[str, Any]], *, table_version: int) -> Response:
    return Response(
        ndjson(lines), media_type=NDJSON, headers={TABLE_VERSION_HEADER: str(table_version)}
    )


# ---------------------------------------------------------------------------- errors


def error_code(error: CivicshareError) -> str:
    if error.code == UNSUPPORTED_OPERATION:
        return "UNSUPPORTED_OPERATION"
    if error.code == MALFORMED_REQUEST:
        return "MALFORMED_REQUEST"
    return _STATUS_CODES.get(error.status, "INTERNAL_ERROR")


def protocol_status(error: CivicshareError) -> int:
    # The protocol answers bad input with 400 where the hub's own API says 422.
    return 400 if error.status in {413, 422} else error.status


def error_response(error: CivicshareError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
    return JSONResponse(
        {"errorCode": error_code(error), "message": error.message},
        status_code=protocol_status(error),
        headers=headers,
    )


def malformed_response(exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid input"}
    where = ".".join(str(part) for part in first.get("loc", ())[1:]) or "request"
    return JSONResponse(
        {"errorCode": "MALFORMED_REQUEST", "message": f"{where}: {first.get('msg', '')}"},
        status_code=400,
    )


class DeltaSharingRoute(APIRoute):
    """Renders every error of its handler (and its dependencies) in the protocol's shape."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def protocol_errors(request: Request) -> Response:
            try:
                return await handler(request)
            except CivicshareError as exc:
                return error_response(exc)
            except RequestValidationError as exc:
                return malformed_response(exc)
            except Exception:
                log.exception("unexpected error in a Delta Sharing request")
                return JSONResponse(
                    {"errorCode": "INTERNAL_ERROR", "message": "internal error"}, status_code=500
                )

        return protocol_errors


# ---------------------------------------------------------------------------- byte ranges


class RangeNotSatisfiable(Exception):
    """A ``Range`` header that selects nothing in the file."""


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive ``(first, last)`` byte of a single-range ``Range`` header, or None for all.

    Several ranges in one header are answered with the whole file, which RFC 9110 allows.
    """
    if header is None:
        return None
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first_text, dash, last_text = spec.strip().partition("-")
    if not dash:
        return None
    try:
        if first_text == "":  # suffix range: the last N bytes
            length = int(last_text)
            if length <= 0 or size == 0:
                raise RangeNotSatisfiable
            return max(size - length, 0), size - 1
        first = int(first_text)
        last = int(last_text) if last_text else size - 1
    except ValueError:
        return None
    if first < 0 or first >= size or last < first:
        raise RangeNotSatisfiable
    return first, min(last, size - 1)
