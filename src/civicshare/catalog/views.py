"""HTTP routes for the catalog: datasets, schemas, search and the DCAT-AP export."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status
from fastapi.responses import JSONResponse

from civicshare.api.deps import Ctx, HubDep, OptionalCtx
from civicshare.catalog import dcat, service
from civicshare.catalog.models import (
    DatasetCreate,
    DatasetDetail,
    DatasetRead,
    DatasetUpdate,
    SchemaUpdate,
    SchemaVersionRead,
    SearchResult,
    Visibility,
)
from civicshare.catalog.tableschema import Classification

router = APIRouter(tags=["catalog"])


@router.post("/datasets", status_code=status.HTTP_201_CREATED)
def create_dataset(body: DatasetCreate, ctx: Ctx) -> DatasetDetail:
    """Register a dataset with its Table Schema (stewards of the agency, admins)."""
    with ctx.unit() as db:
        dataset = service.create_dataset(db=db, actor=ctx.actor, data=body)
        return DatasetDetail.with_schema(dataset, body.table_schema)


@router.get("/datasets")
def search_datasets(
    hub: HubDep,
    ctx: OptionalCtx,
    q: Annotated[str | None, Query(max_length=500, description="Full-text query")] = None,
    agency: Annotated[str | None, Query()] = None,
    theme: Annotated[str | None, Query()] = None,
    visibility: Annotated[Visibility | None, Query()] = None,
    classification: Annotated[Classification | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> SearchResult:
    """Search what the caller may see (without a token: public datasets only), with facets."""
    with hub.db.read_session() as db:
        return service.search(
            db=db,
            actor=ctx.actor if ctx else None,
            q=q,
            agency=agency,
            theme=theme,
            visibility=visibility.value if visibility else None,
            classification=classification,
            limit=limit,
            offset=offset,
        )


@router.get("/datasets/{agency}/{dataset}")
def get_dataset(agency: str, dataset: str, hub: HubDep, ctx: OptionalCtx) -> DatasetDetail:
    with hub.db.read_session() as db:
        found = service.get_visible_dataset(
            db=db, actor=ctx.actor if ctx else None, ref=f"{agency}.{dataset}"
        )
        return DatasetDetail.with_schema(found, service.current_schema(db=db, dataset=found))


@router.patch("/datasets/{agency}/{dataset}")
def update_dataset(agency: str, dataset: str, body: DatasetUpdate, ctx: Ctx) -> DatasetRead:
    with ctx.unit() as db:
        found = service.get_visible_dataset(db=db, actor=ctx.actor, ref=f"{agency}.{dataset}")
        return DatasetRead.of(
            service.update_dataset(db=db, actor=ctx.actor, dataset=found, data=body)
        )


@router.get("/datasets/{agency}/{dataset}/schema")
def schema_versions(
    agency: str, dataset: str, hub: HubDep, ctx: OptionalCtx
) -> list[SchemaVersionRead]:
    with hub.db.read_session() as db:
        found = service.get_visible_dataset(
            db=db, actor=ctx.actor if ctx else None, ref=f"{agency}.{dataset}"
        )
        signed_in = ctx is not None
        return [
            SchemaVersionRead.of(v, signed_in=signed_in)
            for v in service.schema_versions(db=db, dataset=found)
        ]


@router.put("/datasets/{agency}/{dataset}/schema")
def update_schema(agency: str, dataset: str, body: SchemaUpdate, ctx: Ctx) -> SchemaVersionRead:
    """Add a schema version; a breaking change is refused (409) unless ``breaking`` is true."""
    with ctx.unit() as db:
        found = service.get_visible_dataset(db=db, actor=ctx.actor, ref=f"{agency}.{dataset}")
        row = service.update_schema(
            db=db,
            actor=ctx.actor,
            dataset=found,
            table_schema=body.table_schema,
            breaking=body.breaking,
        )
        return SchemaVersionRead.of(row)


@router.get(
    "/catalog.jsonld",
    response_class=JSONResponse,
    responses={200: {"content": {"application/ld+json": {}}}},
)
def dcat_catalog(hub: HubDep) -> JSONResponse:
    """The public catalogue as DCAT-AP 3 JSON-LD (public datasets only; no token needed)."""
    with hub.db.read_session() as db:
        document = dcat.public_catalog(db=db, settings=hub.settings)
    return JSONResponse(document, media_type="application/ld+json")
