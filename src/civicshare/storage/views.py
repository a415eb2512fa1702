"""HTTP routes for dataset versions and purging."""

from __future__ import annotations

from fastapi import APIRouter

from civicshare.api.deps import Ctx, HubDep, OptionalCtx
from civicshare.catalog import service as catalog
from civicshare.catalog.models import DatasetRead
from civicshare.storage import service
from civicshare.storage.models import VersionRead

router = APIRouter(tags=["storage"])


@router.get("/datasets/{agency}/{dataset}/versions")
def list_versions(agency: str, dataset: str, hub: HubDep, ctx: OptionalCtx) -> list[VersionRead]:
    with hub.db.read_session() as db:
        found = catalog.get_visible_dataset(
            db=db, actor=ctx.actor if ctx else None, ref=f"{agency}.{dataset}"
        )
        signed_in = ctx is not None
        return [
            VersionRead.of(v, signed_in=signed_in)
            for v in service.list_versions(db=db, dataset=found)
        ]


@router.post("/datasets/{agency}/{dataset}/purge")
def purge_dataset(agency: str, dataset: str, ctx: Ctx) -> DatasetRead:
    """Crypto-shred the dataset: its data key is destroyed and its data unrecoverable."""
    with ctx.unit() as db:
        found = catalog.get_visible_dataset(db=db, actor=ctx.actor, ref=f"{agency}.{dataset}")
        result = DatasetRead.of(service.purge_dataset(db=db, actor=ctx.actor, dataset=found))
    ctx.hub.db.flush_erased_pages()
    return result
