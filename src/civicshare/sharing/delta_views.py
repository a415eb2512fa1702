"""The Delta Sharing REST API under ``/delta-sharing`` (PROTOCOL.md), for share profiles."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request, Response
from fastapi.security import HTTPAuthorizationCredentials
from sqlalchemy.orm import Session

from civicshare.api.deps import HubDep, bearer
from civicshare.errors import CivicshareError, NotFound, Unauthenticated
from civicshare.hub import Hub
from civicshare.sharing import profiles, service
from civicshare.sharing.paging import paginate
from civicshare.sharing.profiles import Recipient
from civicshare.sharing.protocol import (
    TABLE_VERSION_HEADER,
    DeltaSharingRoute,
    RangeNotSatisfiable,
    ndjson_response,
    parse_range,
    protocol_line,
)
from civicshare.sharing.signing import PAGE_TOKEN_LABEL

PREFIX = "/delta-sharing"

router = APIRouter(prefix=PREFIX, tags=["delta-sharing"], route_class=DeltaSharingRoute)


@dataclass(frozen=True)
class RecipientContext:
    hub: Hub
    recipient: Recipient

    @property
    def page_key(self) -> bytes:
        return self.hub.keys.derive(PAGE_TOKEN_LABEL)

    @contextmanager
    def unit(self) -> Iterator[Session]:
        with self.hub.db.session() as db:
            yield db


def get_recipient(
    hub: HubDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> RecipientContext:
    if credentials is None or not credentials.credentials:
        raise Unauthenticated("a share profile's bearer token is required")
    failure: CivicshareError | None = None
    # Its own transaction, committed even when authentication fails, so the failure is audited.
    with hub.db.session() as db:
        try:
            recipient = profiles.authenticate_recipient(db=db, secret=credentials.credentials)
        except CivicshareError as exc:
            failure = exc
    if failure is not None:
        raise failure
    return RecipientContext(hub=hub, recipient=recipient)


RecipientDep = Annotated[RecipientContext, Depends(get_recipient)]
MaxResults = Annotated[int | None, Query(alias="maxResults")]
PageToken = Annotated[str | None, Query(alias="pageToken")]


def _listing(items: list[dict[str, Any]], next_page_token: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"items": items}
    if next_page_token:
        body["nextPageToken"] = next_page_token
    return body


def _page(
    ctx: RecipientContext,
    items: list[Any],
    scope: str,
    max_results: int | None,
    page_token: str | None,
) -> tuple[list[Any], str | None]:
    page = paginate(
        items,
        key=ctx.page_key,
        scope=f"{ctx.recipient.profile_id}:{scope}",
        max_results=max_results,
        page_token=page_token,
    )
    return list(page.items), page.next_page_token


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/") + PREFIX


@router.get("/shares")
def list_shares(
    ctx: RecipientDep, max_results: MaxResults = None, page_token: PageToken = None
) -> dict[str, Any]:
    names, following = _page(ctx, service.shares(ctx.recipient), "shares", max_results, page_token)
    with ctx.unit() as db:
        service.audit_metadata_call(
            db, ctx.recipient, "sharing.list_shares", share=ctx.recipient.share
        )
    return _listing([{"name": name} for name in names], following)


@router.get("/shares/{share}")
def get_share(share: str, ctx: RecipientDep) -> dict[str, Any]:
    name = service.require_share(ctx.recipient, share)
    with ctx.unit() as db:
        service.audit_metadata_call(db, ctx.recipient, "sharing.get_share", share=name)
    return {"share": {"name": name}}


@router.get("/shares/{share}/schemas")
def list_schemas(
    share: str, ctx: RecipientDep, max_results: MaxResults = None, page_token: PageToken = None
) -> dict[str, Any]:
    with ctx.unit() as db:
        schemas = service.list_schemas(db=db, recipient=ctx.recipient, share=share)
        name = service.require_share(ctx.recipient, share)
        service.audit_metadata_call(db, ctx.recipient, "sharing.list_schemas", share=name)
    names, following = _page(ctx, schemas, f"schemas:{name}", max_results, page_token)
    return _listing([{"name": schema, "share": name} for schema in names], following)


@router.get("/shares/{share}/schemas/{schema}/tables")
def list_tables(
    share: str,
    schema: str,
    ctx: RecipientDep,
    max_results: MaxResults = None,
    page_token: PageToken = None,
) -> dict[str, Any]:
    with ctx.unit() as db:
        tables = service.tables_in_schema(
            db=db, recipient=ctx.recipient, share=share, schema=schema
        )
        items = [table.listing() for table in tables]
        name = service.require_share(ctx.recipient, share)
        service.audit_metadata_call(db, ctx.recipient, "sharing.list_tables", share=name)
    page, following = _page(ctx, items, f"tables:{name}:{schema.lower()}", max_results, page_token)
    return _listing(page, following)


@router.get("/shares/{share}/all-tables")
def list_all_tables(
    share: str, ctx: RecipientDep, max_results: MaxResults = None, page_token: PageToken = None
) -> dict[str, Any]:
    with ctx.unit() as db:
        tables = service.list_tables(db=db, recipient=ctx.recipient, share=share)
        items = [table.listing() for table in tables]
        name = service.require_share(ctx.recipient, share)
        service.audit_metadata_call(db, ctx.recipient, "sharing.list_all_tables", share=name)
    page, following = _page(ctx, items, f"all-tables:{name}", max_results, page_token)
    return _listing(page, following)


TablePath = "/shares/{share}/schemas/{schema}/tables/{table}"


@router.get(TablePath + "/version")
def table_version(
    share: str,
    schema: str,
    table: str,
    ctx: RecipientDep,
    starting_timestamp: Annotated[str | None, Query(alias="startingTimestamp")] = None,
) -> Response:
    with ctx.unit() as db:
        shared = service.get_table(
            db=db, recipient=ctx.recipient, share=share, schema=schema, table=table
        )
        if starting_timestamp is None:
            version = service.latest_version(db=db, table=shared)
        else:
            moment = service.parse_timestamp(starting_timestamp, parameter="startingTimestamp")
            version = service.version_at_or_after(db=db, table=shared, moment=moment)
        service.audit_metadata_call(
            db, ctx.recipient, "sharing.table_version", share=shared.share, table=shared
        )
    return Response(status_code=200, headers={TABLE_VERSION_HEADER: str(version)})


@router.get(TablePath + "/metadata")
def table_metadata(
    share: str,
    schema: str,
    table: str,
    ctx: RecipientDep,
    version: Annotated[int | None, Query()] = None,
    timestamp: Annotated[str | None, Query()] = None,
) -> Response:
    with ctx.unit() as db:
        shared = service.get_table(
            db=db, recipient=ctx.recipient, share=share, schema=schema, table=table
        )
        number = service.resolve_version(db=db, table=shared, version=version, timestamp=timestamp)
        lines = [
            protocol_line(),
            service.metadata(
                db=db,
                hub=ctx.hub,
                recipient=ctx.recipient,
                table=shared,
                version=number,
                time_travel=version is not None or timestamp is not None,
            ),
        ]
        service.audit_metadata_call(
            db, ctx.recipient, "sharing.table_metadata", share=shared.share, table=shared
        )
    return ndjson_response(lines, table_version=number)


@router.post(TablePath + "/query")
def query_table(
    share: str,
    schema: str,
    table: str,
    request: Request,
    ctx: RecipientDep,
    body: Annotated[service.QueryRequest | None, Body()] = None,
) -> Response:
    return _query(share, schema, table, body or service.QueryRequest(), ctx, _base_url(request))


def _query(
    share: str,
    schema: str,
    table: str,
    body: service.QueryRequest,
    ctx: RecipientContext,
    base_url: str,
) -> Response:
    with _denial_recorded(ctx, "sharing.query", share, schema, table), ctx.unit() as db:
        shared = service.get_table(
            db=db, recipient=ctx.recipient, share=share, schema=schema, table=table
        )
        version, lines = service.query_table(
            db=db,
            hub=ctx.hub,
            recipient=ctx.recipient,
            table=shared,
            request=body,
            base_url=base_url,
        )
    return ndjson_response(lines, table_version=version)


@contextmanager
def _denial_recorded(
    ctx: RecipientContext, action: str, share: str, schema: str, table: str
) -> Iterator[None]:
    """A refused read is recorded as denied, in a transaction of its own (the call's, which
    the error rolls back, took its records with it), and the error goes on to the client."""
    try:
        yield
    except CivicshareError as exc:
        service.audit_read_denied(
            ctx.hub, ctx.recipient, action, share=share, schema=schema, table=table, error=exc
        )
        raise


@router.get(TablePath + "/changes")
def table_changes(
    share: str,
    schema: str,
    table: str,
    request: Request,
    ctx: RecipientDep,
    starting_version: Annotated[int | None, Query(alias="startingVersion")] = None,
    ending_version: Annotated[int | None, Query(alias="endingVersion")] = None,
    starting_timestamp: Annotated[str | None, Query(alias="startingTimestamp")] = None,
    ending_timestamp: Annotated[str | None, Query(alias="endingTimestamp")] = None,
) -> Response:
    with _denial_recorded(ctx, "sharing.changes", share, schema, table), ctx.unit() as db:
        shared = service.get_table(
            db=db, recipient=ctx.recipient, share=share, schema=schema, table=table
        )
        start, lines = service.table_changes(
            db=db,
            hub=ctx.hub,
            recipient=ctx.recipient,
            table=shared,
            starting_version=starting_version,
            ending_version=ending_version,
            starting_timestamp=starting_timestamp,
            ending_timestamp=ending_timestamp,
            base_url=_base_url(request),
        )
    return ndjson_response(lines, table_version=start)


# ---------------------------------------------------------------------------- files

files_router = APIRouter(prefix=PREFIX, tags=["delta-sharing"], route_class=DeltaSharingRoute)
PARQUET = "application/vnd.apache.parquet"


@files_router.api_route("/files/{grant}", methods=["GET", "HEAD"], include_in_schema=False)
def serve_file(
    grant: str,
    request: Request,
    hub: HubDep,
    signature: Annotated[str, Query(min_length=1, max_length=128)],
) -> Response:
    """A data file named by a signed URL: no bearer token, ``HEAD`` and ``Range`` supported.

    The signature travels in the query string, which the access log leaves out.
    """
    token = f"{grant}.{signature}"
    failure: CivicshareError | None = None
    # Committed even when the file is refused: open_file records the refusal.
    with hub.db.session() as db:
        try:
            opened = service.open_file(db=db, hub=hub, token=token)
        except CivicshareError as exc:
            failure = exc
    if failure is not None:
        raise failure
    data = opened.part.data
    size = len(data)
    headers = {"Accept-Ranges": "bytes", "Cache-Control": "private, no-store"}
    try:
        selected = parse_range(request.headers.get("range"), size)
    except RangeNotSatisfiable:
        return Response(status_code=416, headers={"Content-Range": f"bytes */{size}", **headers})
    if request.method == "HEAD":
        return Response(headers={"Content-Length": str(size), **headers}, media_type=PARQUET)
    if selected is None:
        return Response(data, headers=headers, media_type=PARQUET)
    first, last = selected
    headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    return Response(data[first : last + 1], status_code=206, headers=headers, media_type=PARQUET)


# Mounted after every other router, so it only answers paths nothing else claimed.
fallback_router = APIRouter(prefix=PREFIX, route_class=DeltaSharingRoute)


@fallback_router.api_route(
    "/{path:path}",
    methods=["GET", "POST", "HEAD", "PUT", "DELETE", "PATCH"],
    include_in_schema=False,
)
def unknown_endpoint(path: str, request: Request) -> None:
    raise NotFound(f"{request.method} {PREFIX}/{path} is not a Delta Sharing endpoint")
