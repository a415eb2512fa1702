"""HTTP routes for ingesting files into datasets and reading ingest reports."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Query, UploadFile, status

from civicshare.api.deps import Ctx
from civicshare.catalog import service as catalog
from civicshare.errors import Invalid
from civicshare.ingest import service
from civicshare.ingest.models import IngestDetail, IngestReport

router = APIRouter(tags=["ingest"])


@router.post("/datasets/{agency}/{dataset}/ingest", status_code=status.HTTP_201_CREATED)
def ingest_upload(
    agency: str,
    dataset: str,
    ctx: Ctx,
    file: Annotated[UploadFile, File(description="The data file (multipart upload).")],
    mode: Annotated[str, Query(description="append | replace | upsert | delete")] = "append",
    key: Annotated[str | None, Query(description="Key columns, comma-separated")] = None,
    max_error_rate: Annotated[float, Query(ge=0, le=1)] = 0.05,
) -> IngestReport:
    """Validate the uploaded file against the dataset's schema and store a new version.

    The upload is streamed by the multipart parser into an unnamed temporary file sealed under
    a key held only in memory (``api.uploads``): it never sits whole in memory, and what
    reaches the disk is ciphertext.
    """
    keys = [k.strip() for k in key.split(",") if k.strip()] if key else None
    with ctx.unit() as db:
        target = catalog.get_visible_dataset(db=db, actor=ctx.actor, ref=f"{agency}.{dataset}")
        report = service.ingest_file(
            db=db,
            hub=ctx.hub,
            actor=ctx.actor,
            dataset=target,
            source=file.file,
            filename=file.filename or "upload",
            mode=mode,
            key=keys,
            max_error_rate=max_error_rate,
        )
    if report.status != "stored":
        # Raised after the commit: the rejected ingest stays on record, no version was made.
        raise Invalid(
            f"{report.rows_rejected} of {report.rows_read} rows failed validation, more than "
            f"the allowed {report.max_error_rate:.2%}; nothing was stored",
            code="error_rate_exceeded",
            details=report.model_dump(mode="json"),
        )
    return report


@router.get("/datasets/{agency}/{dataset}/ingests")
def list_ingests(agency: str, dataset: str, ctx: Ctx) -> list[IngestReport]:
    with ctx.read() as db:
        target = catalog.get_visible_dataset(db=db, actor=ctx.actor, ref=f"{agency}.{dataset}")
        return service.list_ingests(db=db, actor=ctx.actor, dataset=target)


@router.get("/datasets/{agency}/{dataset}/ingests/{ingest_id}")
def get_ingest(agency: str, dataset: str, ingest_id: str, ctx: Ctx) -> IngestDetail:
    """The report and the quarantined rows (protected values masked unless a steward asks)."""
    with ctx.unit() as db:
        target = catalog.get_visible_dataset(db=db, actor=ctx.actor, ref=f"{agency}.{dataset}")
        return service.get_ingest(
            db=db, hub=ctx.hub, actor=ctx.actor, dataset=target, ingest_id=ingest_id
        )
