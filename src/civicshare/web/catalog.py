"""Catalog pages: search with facets and the dataset page, for staff and for the public.

``/catalog`` shows what a logged-in person may discover; ``/open-data`` shows the public
datasets to anyone. Both call the catalog service with the viewer (``None`` for the public), so
visibility is decided there, never here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Response
from sqlalchemy.orm import Session

from civicshare.agency.models import Role
from civicshare.catalog import service as catalog
from civicshare.catalog.models import Dataset, DatasetRead
from civicshare.errors import Forbidden, Invalid, NotFound
from civicshare.permissions import Actor
from civicshare.policy.models import PURPOSES
from civicshare.policy.treatments import quote_identifier
from civicshare.query import service as query
from civicshare.query.engine import HARD_MAX_ROWS
from civicshare.query.formats import json_text
from civicshare.query.service import QueryResult
from civicshare.storage import service as storage
from civicshare.web.context import Visitor, VisitorDep
from civicshare.web.render import PortalRoute, render
from civicshare.web.results import ResultTable, bar_chart, time_chart

router = APIRouter(route_class=PortalRoute, include_in_schema=False)

PAGE_SIZE = 20
MAX_QUERY_LENGTH = 200
FACETS = ("agency", "theme", "visibility", "classification")
PREVIEW_ROWS = 20
CHART_CATEGORIES = 20
TIME_TYPES = {"date", "datetime"}
CHARTABLE = TIME_TYPES | {"string", "integer", "boolean", "year"}
DOWNLOAD_FORMATS = ("csv", "json", "parquet")
# The anonymous public, as the query engine and the audit log see open-data portal visitors.
PUBLIC = Actor(email="public@web-portal", role=Role.viewer, kind="person")


@dataclass(frozen=True)
class Portal:
    """Which catalog a page belongs to: the staff catalog or the public open-data portal."""

    base: str
    title: str
    public: bool


STAFF = Portal(base="/catalog", title="Catalog", public=False)
OPEN_DATA = Portal(base="/open-data", title="Open data", public=True)


@router.get("/catalog")
def staff_catalog(visitor: VisitorDep) -> Response:
    actor = visitor.require_actor()
    return _search_page(visitor, STAFF, actor)


@router.get("/open-data")
def open_data(visitor: VisitorDep) -> Response:
    return _search_page(visitor, OPEN_DATA, None)


@router.get("/catalog/{ref}")
def staff_dataset(visitor: VisitorDep, ref: str) -> Response:
    actor = visitor.require_actor()
    return _dataset_page(visitor, STAFF, actor, ref)


@router.get("/open-data/{ref}")
def open_dataset(visitor: VisitorDep, ref: str) -> Response:
    return _dataset_page(visitor, OPEN_DATA, None, ref)


@router.get("/catalog/{ref}/download")
def staff_download(visitor: VisitorDep, ref: str) -> Response:
    actor = visitor.require_actor()
    return _download(visitor, STAFF, actor, ref)


@router.get("/open-data/{ref}/download")
def open_download(visitor: VisitorDep, ref: str) -> Response:
    return _download(visitor, OPEN_DATA, None, ref)


def _search_page(visitor: Visitor, portal: Portal, actor: Actor | None) -> Response:
    params = visitor.request.query_params
    q = params.get("q", "")[:MAX_QUERY_LENGTH]
    filters = {name: params.get(name, "")[:100] for name in FACETS}
    if portal.public:
        filters["visibility"] = "public"
    page = _page_number(params.get("page", "1"))
    with visitor.read() as db:
        result = catalog.search(
            db=db,
            actor=actor,
            q=q or None,
            limit=PAGE_SIZE,
            offset=(page - 1) * PAGE_SIZE,
            **{name: value or None for name, value in filters.items()},
        )
    context: dict[str, Any] = {
        "portal": portal,
        "q": q,
        "filters": filters,
        "facet_names": [f for f in FACETS if not (portal.public and f == "visibility")],
        "result": result,
        "page": page,
        "pages": max(1, -(-result.total // PAGE_SIZE)),
        "query_for": _query_builder(q, filters),
    }
    return render(visitor, "catalog.html", context)


def _dataset_page(visitor: Visitor, portal: Portal, actor: Actor | None, ref: str) -> Response:
    params = visitor.request.query_params
    purpose = _purpose(params.get("purpose", ""))
    with visitor.read() as db:
        dataset = _find(db, portal, actor, ref)
        schema = catalog.current_schema(db=db, dataset=dataset)
        versions = storage.list_versions(db=db, dataset=dataset)
        ref = dataset.ref  # validated: only slugs, safe to name in SQL
        context: dict[str, Any] = {
            "portal": portal,
            "dataset": DatasetRead.of(dataset),
            "schema": schema,
            "versions": sorted(versions, key=lambda v: v.number, reverse=True),
            "purposes": PURPOSES,
            "purpose": purpose or "",
            "chart_columns": [f.name for f in schema.fields if f.type in CHARTABLE],
            "chart_column": "",
            "preview": None,
            "chart": None,
            "data_error": None,
            "formats": DOWNLOAD_FORMATS,
        }
    viewer = actor or PUBLIC
    if params.get("preview") and versions:
        context.update(_preview(visitor, viewer, ref, purpose))
    column = params.get("chart", "")
    if column and versions:
        field = next((f for f in schema.fields if f.name == column), None)
        context["chart_column"] = column
        if field is None or field.type not in CHARTABLE:
            context["data_error"] = f"'{column[:100]}' is not a column that can be charted"
        else:
            context.update(_chart(visitor, viewer, ref, field.name, field.type, purpose))
    return render(visitor, "dataset.html", context)


def _find(db: Session, portal: Portal, actor: Actor | None, ref: str) -> Dataset:
    dataset = catalog.get_visible_dataset(db=db, actor=actor, ref=ref)
    if portal.public and dataset.visibility != "public":
        # A hub dataset is discoverable by staff, but it is not open data.
        raise NotFound(f"no dataset '{ref}'", code="dataset_not_found")
    return dataset


def _purpose(raw: str) -> str | None:
    """Only a purpose of the vocabulary is passed on; anything else means none."""
    return raw if raw in PURPOSES else None


def _run(
    visitor: Visitor,
    viewer: Actor,
    sql: str,
    purpose: str | None,
    fmt: str = "json",
    max_rows: int | None = None,
) -> QueryResult:
    # Its own transaction: the governed query records its audit entry, committed here.
    with visitor.unit() as db:
        return query.run_query(
            db=db,
            hub=visitor.hub,
            actor=viewer,
            sql=sql,
            purpose=purpose,
            fmt=fmt,
            max_rows=max_rows,
        )


def _preview(visitor: Visitor, viewer: Actor, ref: str, purpose: str | None) -> dict[str, Any]:
    """The first rows as this viewer may see them (masks applied by the policy view)."""
    try:
        result = _run(visitor, viewer, f"SELECT * FROM {ref} LIMIT {PREVIEW_ROWS}", purpose)
    except (Forbidden, Invalid) as exc:
        return {"data_error": exc.message}
    assert result.body is not None
    return {"preview": ResultTable.of(result.body)}


def _chart(
    visitor: Visitor, viewer: Actor, ref: str, column: str, kind: str, purpose: str | None
) -> dict[str, Any]:
    """Counts per month (dates) or per value (categories), through the governed query."""
    name = quote_identifier(column)
    if kind in TIME_TYPES:
        sql = (
            f"SELECT date_trunc('month', {name}) AS month, count(*) AS n "
            f"FROM {ref} WHERE {name} IS NOT NULL GROUP BY 1 ORDER BY 1"
        )
    else:
        sql = (
            f"SELECT CAST({name} AS VARCHAR) AS value, count(*) AS n "
            f"FROM {ref} GROUP BY 1 ORDER BY 2 DESC LIMIT {CHART_CATEGORIES}"
        )
    try:
        result = _run(visitor, viewer, sql, purpose)
    except (Forbidden, Invalid) as exc:
        return {"data_error": exc.message}
    assert result.body is not None
    table = ResultTable.of(result.body)
    if kind in TIME_TYPES:
        spec = time_chart(table, period="month", value="n", title=f"Rows per month of {column}")
    else:
        spec = bar_chart(table, label="value", value="n", title=f"Most frequent {column}")
    return {"chart": {"spec": spec, "table": table, "title": spec["title"]}}


def _download(visitor: Visitor, portal: Portal, actor: Actor | None, ref: str) -> Response:
    params = visitor.request.query_params
    fmt = params.get("format", "csv")
    if fmt not in DOWNLOAD_FORMATS:
        raise Invalid(f"unknown format '{fmt[:20]}'; use csv, json or parquet", code="bad_format")
    purpose = _purpose(params.get("purpose", ""))
    with visitor.unit() as db:
        dataset = _find(db, portal, actor, ref)
        name, checked_ref = dataset.slug, dataset.ref
    # A download is the whole dataset, not a page of it: up to the engine's hard row cap
    # (bigger tables are for Delta Sharing or the CKAN datastore API, which page).
    result = _run(
        visitor, actor or PUBLIC, f"SELECT * FROM {checked_ref}", purpose, fmt, HARD_MAX_ROWS
    )
    content = json_text(result.response()).encode() if fmt == "json" else result.content or b""
    headers = {"Content-Disposition": f'attachment; filename="{name}.{fmt}"'}
    if result.truncated:
        headers["X-Civicshare-Truncated"] = f"first {HARD_MAX_ROWS} rows only"
    return Response(content, media_type=result.media_type, headers=headers)


def _page_number(raw: str) -> int:
    return int(raw) if raw.isdigit() and 0 < int(raw) < 10_000 else 1


def _query_builder(q: str, filters: dict[str, str]) -> Any:
    """A template helper: the search's query string with some parameters changed."""
    from urllib.parse import urlencode

    def query_for(**changes: str | int) -> str:
        values: dict[str, str | int] = {"q": q, **filters, **changes}
        return "?" + urlencode({k: v for k, v in values.items() if v not in ("", None)})

    return query_for
