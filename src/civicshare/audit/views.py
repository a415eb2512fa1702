"""HTTP routes of the audit log, named after RFC 6962's log API so existing tooling reads them.

Checkpoints, the verifier key and proofs are public: they reveal nothing but hashes. Records are
read with a token: auditors all, stewards those about their agency, everyone their own actions.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse
from sqlalchemy.orm import Session

from civicshare.api.deps import Ctx, HubDep
from civicshare.audit import service
from civicshare.audit.models import ConsistencyProof, EntriesPage, InclusionProof, RecordPage
from civicshare.hub import Hub

router = APIRouter(prefix="/audit", tags=["audit"])

NO_STORE = {"Cache-Control": "no-store"}
Index = Annotated[int, Query(ge=0, le=2**62)]


@router.get("/checkpoint", response_class=PlainTextResponse)
def get_checkpoint(hub: HubDep) -> PlainTextResponse:
    """The latest signed checkpoint (C2SP tlog-checkpoint signed note), text/plain."""
    return PlainTextResponse(service.latest_signed(hub).note, headers=NO_STORE)


@router.get("/key", response_class=PlainTextResponse)
def get_key(hub: HubDep) -> PlainTextResponse:
    """The checkpoint verifier key, ``name+keyid+base64(0x01||ed25519 public key)``."""
    with hub.db.read_session() as db:
        return PlainTextResponse(str(service.verifier(db)) + "\n")


@router.get("/entries")
def get_entries(ctx: Ctx, start: Index, end: Index) -> EntriesPage:
    """Records ``[start, end)`` (a page at most) that the caller may read, as base64 bytes."""
    with ctx.read() as db:
        return service.entries(db, actor=ctx.actor, start=start, end=end)


@router.get("/proof/inclusion")
def get_inclusion_proof(hub: HubDep, index: Index, size: Index | None = None) -> InclusionProof:
    """The audit path of record ``index`` in the tree of ``size`` (default: latest checkpoint)."""
    with _tree_reader(hub, size) as db:
        return service.inclusion_proof(db, index=index, size=size)


@router.get("/proof/consistency")
def get_consistency_proof(hub: HubDep, first: Index, second: Index) -> ConsistencyProof:
    """The proof that the tree of size ``second`` extends the tree of size ``first``."""
    with _tree_reader(hub, second) as db:
        return service.consistency_proof(db, first=first, second=second)


@router.get("/records")
def list_records(
    ctx: Ctx,
    action: Annotated[str | None, Query(max_length=64)] = None,
    actor: Annotated[str | None, Query(max_length=320)] = None,
    agency: Annotated[str | None, Query(max_length=63)] = None,
    outcome: Annotated[str | None, Query(max_length=16)] = None,
    resource: Annotated[str | None, Query(max_length=255)] = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    before: Index | None = None,
    limit: Annotated[int, Query(ge=1, le=service.MAX_RECORDS_PER_PAGE)] = 100,
) -> RecordPage:
    """The records the caller may read, newest first, filtered (stewards and auditors)."""
    where = service.RecordFilter(
        action=action,
        actor=actor,
        agency=agency,
        outcome=outcome,
        resource=resource,
        since=_aware(since),
        until=_aware(until),
    )
    with ctx.read() as db:
        return service.list_records(db, actor=ctx.actor, where=where, before=before, limit=limit)


@contextmanager
def _tree_reader(hub: Hub, size: int | None) -> Iterator[Session]:
    """A read-only session when the tree already covers ``size``; else one that may integrate.

    Proofs are read without taking the write turn, so verifiers never queue behind appenders;
    only a proof for a size beyond the integrated tree (rare: checkpoints integrate) writes.
    """
    with hub.db.read_session() as db:
        if size is None or size <= service.integrated_size(db):
            yield db
            return
    with hub.db.session() as db:
        yield db


def _aware(moment: dt.datetime | None) -> dt.datetime | None:
    """Times without a zone are taken as UTC, like every time in the log."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=dt.UTC)
