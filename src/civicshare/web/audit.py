"""Audit pages: access history of my agency's data, the signed checkpoint, one-click verify."""

from __future__ import annotations

import base64
from typing import Any

from fastapi import APIRouter, Response
from sqlalchemy.orm import Session

from civicshare.audit import service as audit
from civicshare.audit.verifier import Verdict, verify_log
from civicshare.errors import Forbidden
from civicshare.hub import Hub
from civicshare.permissions import Action, Actor, is_allowed
from civicshare.web.context import FormVisitorDep, Visitor, VisitorDep
from civicshare.web.render import PortalRoute, render

router = APIRouter(route_class=PortalRoute, include_in_schema=False)
HISTORY_ACTIONS = ("query", "agreement", "ingest", "dataset")
HISTORY_LIMIT = 200


class StoredLog:
    """The verifier's view of this hub's log, read through the audit service (no HTTP hop).

    Verification checks the stored records against the signed checkpoint exactly as an outside
    verifier does over HTTP; it needs an actor who may read every record.
    """

    def __init__(self, db: Session, hub: Hub, actor: Actor) -> None:
        self.db, self.hub, self.actor = db, hub, actor

    def checkpoint(self) -> str:
        return audit.checkpoint(self.db, self.hub).note

    def entries(self, start: int, end: int) -> list[tuple[int, bytes]]:
        page = audit.entries(self.db, actor=self.actor, start=start, end=end)
        return [(e.index, base64.b64decode(e.leaf_input)) for e in page.entries]

    def inclusion(self, index: int, size: int) -> list[bytes]:
        proof = audit.inclusion_proof(self.db, index=index, size=size)
        return [base64.b64decode(value) for value in proof.audit_path]

    def consistency(self, first: int, second: int) -> list[bytes]:
        proof = audit.consistency_proof(self.db, first=first, second=second)
        return [base64.b64decode(value) for value in proof.consistency]


@router.get("/audit")
def audit_page(visitor: VisitorDep) -> Response:
    return _page(visitor, None)


@router.post("/audit/verify")
def verify(visitor: FormVisitorDep) -> Response:
    actor = visitor.require_actor()
    if not is_allowed(actor, Action.audit_read_all):
        raise Forbidden("only auditors and administrators verify the whole log", code="forbidden")
    with visitor.unit() as db:
        verdict = verify_log(StoredLog(db, visitor.hub, actor), audit.verifier(db))
    return _page(visitor, verdict)


def _page(visitor: Visitor, verdict: Verdict | None) -> Response:
    actor = visitor.require_actor()
    agency = None if is_allowed(actor, Action.audit_read_all) else actor.agency_slug
    signed = audit.latest_signed(visitor.hub)
    checkpoint = {"size": signed.size, "note": signed.note, "signed_at": signed.signed_at}
    with visitor.read() as db:
        records = _history(db, actor, agency)
    context: dict[str, Any] = {
        "checkpoint": checkpoint,
        "records": records,
        "agency": agency,
        "may_verify": is_allowed(actor, Action.audit_read_all),
        "verdict": verdict,
    }
    return render(visitor, "audit.html", context)


def _history(db: Session, actor: Actor, agency: str | None) -> list[dict[str, Any]]:
    """Accesses and decisions about the agency's data (everything, for auditors), newest first."""
    where = audit.RecordFilter(agency=agency) if agency else None
    page = audit.list_records(db, actor=actor, where=where, limit=HISTORY_LIMIT)
    return [
        {"index": r.index, **r.record}
        for r in page.records
        if str(r.record.get("action", "")).split(".")[0] in HISTORY_ACTIONS
    ]
