"""CKAN's Action API (read-only) at ``/api/3/action/`` (and ``/api/action/``, as ckanapi calls).

Responses use CKAN's envelope: ``{"help", "success": true, "result"}``, or
``{"help", "success": false, "error": {"__type", "message"}}`` with CKAN's status codes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from civicshare.api.deps import HubDep
from civicshare.errors import CivicshareError, Invalid, NotFound
from civicshare.hub import Hub
from civicshare.sharing import ckan

API = "/api/3"

# CKAN's error types (ckan/views/api.py) and the statuses it answers them with.
_ERROR_TYPES: dict[int, tuple[str, int]] = {
    400: ("Validation Error", 409),
    401: ("Authorization Error", 403),
    403: ("Authorization Error", 403),
    404: ("Not Found Error", 404),
    422: ("Validation Error", 409),
    429: ("Rate Limit Error", 429),
}


def _help(request: Request, action: str) -> str:
    return f"{str(request.base_url).rstrip('/')}{API}/action/help_show?name={action}"


def _error(request: Request, action: str, error: CivicshareError) -> JSONResponse:
    kind, status = _ERROR_TYPES.get(error.status, ("Internal Server Error", 500))
    if error.code == "search_query_error":
        kind = "Search Query Error"
    body: dict[str, Any] = {"__type": kind, "message": f"{kind}: {error.message}"}
    if kind == "Validation Error":
        field, _, message = error.message.partition(": ")
        body[field if message else "message"] = [message or error.message]
    return JSONResponse(
        {"help": _help(request, action), "success": False, "error": body}, status_code=status
    )


class CkanRoute(APIRoute):
    """Renders errors in CKAN's envelope."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def ckan_errors(request: Request) -> Response:
            try:
                return await handler(request)
            except CivicshareError as exc:
                return _error(request, request.path_params.get("action", ""), exc)

        return ckan_errors


router = APIRouter(tags=["ckan"], route_class=CkanRoute)

Action = Callable[[Hub, dict[str, Any], str], Any]


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/") + API


def _with_db(hub: Hub, work: Callable[[Any], Any]) -> Any:
    with hub.db.session() as db:
        return work(db)


ACTIONS: dict[str, Action] = {
    "package_list": lambda hub, p, base: _with_db(
        hub,
        lambda db: ckan.package_list(
            db=db,
            limit=ckan.int_param(p, "limit", 10**9, maximum=10**9) if "limit" in p else None,
            offset=ckan.int_param(p, "offset", 0, maximum=10**9),
        ),
    ),
    "package_search": lambda hub, p, base: _with_db(
        hub, lambda db: ckan.package_search(db=db, params=p, base_url=base)
    ),
    "package_show": lambda hub, p, base: _with_db(
        hub, lambda db: ckan.package_show(db=db, ref=_required(p, "id"), base_url=base)
    ),
    "organization_list": lambda hub, p, base: _with_db(
        hub,
        lambda db: ckan.organization_list(
            db=db, all_fields=ckan.bool_param(p, "all_fields", False)
        ),
    ),
    "organization_show": lambda hub, p, base: _with_db(
        hub,
        lambda db: ckan.organization_show(
            db=db,
            ref=_required(p, "id"),
            include_datasets=ckan.bool_param(p, "include_datasets", False),
            base_url=base,
        ),
    ),
    "datastore_search": lambda hub, p, base: ckan.datastore_search(
        hub=hub, params=p, base_url=base
    ),
    "datastore_search_sql": lambda hub, p, base: _with_db(
        hub, lambda db: ckan.datastore_search_sql(db=db, hub=hub, params=p)
    ),
}


def _required(params: dict[str, Any], name: str) -> str:
    value = params.get(name)
    if value in (None, ""):
        raise Invalid(f"{name}: Missing value", code="validation_error")
    return str(value)


async def _params(request: Request) -> dict[str, Any]:
    params: dict[str, Any] = dict(request.query_params)
    if request.method == "POST":
        raw = await request.body()
        if raw.strip():
            try:
                body = json.loads(raw)
            except ValueError:
                raise Invalid("request body: not valid JSON", code="validation_error") from None
            if not isinstance(body, dict):
                raise Invalid("request body: must be a JSON object", code="validation_error")
            params.update(body)
    return params


@router.api_route(API + "/action/{action}", methods=["GET", "POST"])
@router.api_route("/api/action/{action}", methods=["GET", "POST"], include_in_schema=False)
async def call_action(action: str, request: Request, hub: HubDep) -> JSONResponse:
    """One CKAN action (read-only subset) over the hub's open data."""
    implementation = ACTIONS.get(action)
    if implementation is None:
        raise NotFound(f"action '{action}' is not available on this (read-only) CKAN API")
    params = await _params(request)
    result = await run_in_threadpool(implementation, hub, params, _base(request))
    return JSONResponse({"help": _help(request, action), "success": True, "result": result})


@router.get(API + "/datastore/dump/{rid}")
def datastore_dump(rid: str, hub: HubDep) -> Response:
    """A resource's rows as CSV."""
    with hub.db.session() as db:
        content = ckan.datastore_dump(db=db, hub=hub, rid=rid)
    return Response(
        content,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{rid}.csv"'},
    )
