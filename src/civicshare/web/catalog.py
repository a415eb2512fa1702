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

from civicshare.catalog import service as catalog
from civicshare.catalog.models import Dataset, DatasetRead
from civicshare.errors import NotFound
from civicshare.permissions import Actor
from civicshare.storage import service as storage
from civicshare.web.context import Visitor, VisitorDep
from civicshare.web.render import PortalRoute, render

router = APIRouter(route_class=PortalRoute, include_in_schema=False)

PAGE_SIZE = 20
MAX_QUERY_LENGTH = 200
FACETS = ("agency", "theme", "visibility", "classification")


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


def _search_page(visitor: Visitor, portal: Portal, actor: Actor | None) -> Response:
    params = visitor.request.query_params
    q = params.get("q", "")[:MAX_QUERY_LENGTH]
    filters = {name: params.get(name, "")[:100] for name in FACETS}
    if portal.public:
        filters["visibility"] = "public"
    page = _page_number(params.get("page", "1"))
    with visitor.unit() as db:
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
    with visitor.unit() as db:
        dataset = _find(db, portal, actor, ref)
        schema = catalog.current_schema(db=db, dataset=dataset)
        versions = storage.list_versions(db=db, dataset=dataset)
        context: dict[str, Any] = {
            "portal": portal,
            "dataset": DatasetRead.of(dataset),
            "schema": schema,
            "versions": sorted(versions, key=lambda v: v.number, reverse=True),
        }
    return render(visitor, "dataset.html", context)


def _find(db: Session, portal: Portal, actor: Actor | None, ref: str) -> Dataset:
    dataset = catalog.get_visible_dataset(db=db, actor=actor, ref=ref)
    if portal.public and dataset.visibility != "public":
        # A hub dataset is discoverable by staff, but it is not open data.
        raise NotFound(f"no dataset '{ref}'", code="dataset_not_found")
    return dataset


def _page_number(raw: str) -> int:
    return int(raw) if raw.isdigit() and 0 < int(raw) < 10_000 else 1


def _query_builder(q: str, filters: dict[str, str]) -> Any:
    """A template helper: the search's query string with some parameters changed."""
    from urllib.parse import urlencode

    def query_for(**changes: str | int) -> str:
        values: dict[str, str | int] = {"q": q, **filters, **changes}
        return "?" + urlencode({k: v for k, v in values.items() if v not in ("", None)})

    return query_for
