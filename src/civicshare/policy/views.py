"""HTTP routes for agreements and objections."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, status

from civicshare.api.deps import Ctx
from civicshare.policy import service
from civicshare.policy.models import (
    AgreementDecision,
    AgreementRead,
    AgreementRequest,
    ObjectionCreate,
    ObjectionRead,
    State,
)
from civicshare.policy.odrl import odrl_agreement

router = APIRouter(tags=["agreements"])


@router.get("/agreements")
def list_agreements(
    ctx: Ctx,
    agency: Annotated[str | None, Query()] = None,
    state: Annotated[State | None, Query()] = None,
) -> list[AgreementRead]:
    with ctx.read() as db:
        found = service.list_agreements(db=db, actor=ctx.actor, agency=agency, state=state)
        return [AgreementRead.of(a) for a in found]


@router.post("/agreements", status_code=status.HTTP_201_CREATED)
def request_agreement(body: AgreementRequest, ctx: Ctx) -> AgreementRead:
    with ctx.unit() as db:
        return AgreementRead.of(service.request_agreement(db=db, actor=ctx.actor, data=body))


@router.get("/agreements/{agreement_id}")
def get_agreement(agreement_id: str, ctx: Ctx) -> AgreementRead:
    with ctx.read() as db:
        found = service.get_agreement(db=db, actor=ctx.actor, agreement_id=agreement_id)
        return AgreementRead.of(found)


@router.get("/agreements/{agreement_id}/odrl")
def export_agreement(agreement_id: str, ctx: Ctx) -> dict[str, Any]:
    """The agreement as an ODRL 2.2 Agreement (JSON-LD)."""
    with ctx.read() as db:
        found = service.get_agreement(db=db, actor=ctx.actor, agreement_id=agreement_id)
        return odrl_agreement(found, base_url=ctx.hub.settings.public_url)


@router.post("/agreements/{agreement_id}/approve")
def approve_agreement(agreement_id: str, body: AgreementDecision, ctx: Ctx) -> AgreementRead:
    with ctx.unit() as db:
        decided = service.approve_agreement(
            db=db, actor=ctx.actor, agreement_id=agreement_id, reason=body.reason
        )
        return AgreementRead.of(decided)


@router.post("/agreements/{agreement_id}/reject")
def reject_agreement(agreement_id: str, body: AgreementDecision, ctx: Ctx) -> AgreementRead:
    with ctx.unit() as db:
        decided = service.reject_agreement(
            db=db, actor=ctx.actor, agreement_id=agreement_id, reason=body.reason
        )
        return AgreementRead.of(decided)


@router.post("/agreements/{agreement_id}/revoke")
def revoke_agreement(agreement_id: str, body: AgreementDecision, ctx: Ctx) -> AgreementRead:
    with ctx.unit() as db:
        revoked = service.revoke_agreement(
            db=db, actor=ctx.actor, agreement_id=agreement_id, reason=body.reason
        )
        return AgreementRead.of(revoked)


@router.get("/objections")
def list_objections(ctx: Ctx, agency: Annotated[str, Query()]) -> list[ObjectionRead]:
    with ctx.read() as db:
        found = service.list_objections(db=db, actor=ctx.actor, agency=agency)
        return [ObjectionRead.of(o) for o in found]


@router.post("/objections", status_code=status.HTTP_201_CREATED)
def register_objection(body: ObjectionCreate, ctx: Ctx) -> ObjectionRead:
    with ctx.unit() as db:
        objection = service.register_objection(db=db, hub=ctx.hub, actor=ctx.actor, data=body)
        return ObjectionRead.of(objection)


@router.delete("/objections/{objection_id}")
def withdraw_objection(objection_id: str, ctx: Ctx) -> ObjectionRead:
    with ctx.unit() as db:
        objection = service.withdraw_objection(db=db, actor=ctx.actor, objection_id=objection_id)
        return ObjectionRead.of(objection)
