"""Agreement pages: request access, the stewards' inbox, decisions and the agreement page.

Every decision is the policy service's (``request_agreement``, ``approve_agreement``, ...); the
pages only turn forms into its input models and show its errors next to the fields.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from fastapi import APIRouter, Response
from pydantic import ValidationError

from civicshare.audit import service as audit
from civicshare.catalog import service as catalog
from civicshare.catalog.tableschema import SchemaField
from civicshare.errors import CivicshareError, Conflict, Forbidden, Invalid, NotFound
from civicshare.policy import service as policy
from civicshare.policy.models import PURPOSES, AgreementRead, AgreementRequest, State
from civicshare.policy.odrl import odrl_agreement
from civicshare.web.context import FormVisitorDep, Visitor, VisitorDep
from civicshare.web.forms import FieldErrors
from civicshare.web.render import PortalRoute, redirect, render

router = APIRouter(route_class=PortalRoute, include_in_schema=False)

TREATMENTS = ("clear", "redact", "show_last(4)", "pseudonym", "null", "year_only")
DEFAULT_DAYS = 90
HISTORY_LIMIT = 1000


def proposed_treatment(field: SchemaField) -> str:
    """What the request form suggests for a column, from its classification."""
    if field.classification == "sensitive":
        return "null"
    if field.classification == "personal":
        return "year_only" if field.type in {"date", "datetime"} else "pseudonym"
    return "clear"


@router.get("/agreements")
def agreement_list(visitor: VisitorDep) -> Response:
    actor = visitor.require_actor()
    with visitor.read() as db:
        found = [AgreementRead.of(a) for a in policy.list_agreements(db=db, actor=actor)]
    mine = actor.agency_slug
    context = {
        "inbox": [a for a in found if a.provider == mine and a.state is State.requested],
        "provided": [a for a in found if a.provider == mine and a.state is not State.requested],
        "received": [a for a in found if a.recipient == mine],
        "others": [a for a in found if mine not in (a.provider, a.recipient)],
    }
    return render(visitor, "agreements.html", context)


@router.get("/agreements/new")
def request_form(visitor: VisitorDep, dataset: str = "") -> Response:
    visitor.require_actor()
    today = dt.date.today()
    values = {
        "title": "",
        "purpose": "",
        "purpose_text": "",
        "legal_basis": "",
        "valid_from": today.isoformat(),
        "valid_until": (today + dt.timedelta(days=DEFAULT_DAYS)).isoformat(),
        "aggregate_only": "",
        "allow_history": "",
        "min_cell": "11",
        "row_filter": "",
    }
    return _request_page(visitor, dataset, values, None, FieldErrors())


@router.post("/agreements/new")
async def request_submit(visitor: FormVisitorDep) -> Response:
    actor = visitor.require_actor()
    form = await visitor.request.form()
    values = {key: str(value)[:4000] for key, value in form.items() if isinstance(value, str)}
    ref = values.get("dataset", "")
    errors = FieldErrors()
    with visitor.unit() as db:
        dataset = catalog.get_visible_dataset(db=db, actor=actor, ref=ref)
        fields = catalog.current_schema(db=db, dataset=dataset).fields
    columns = {
        field.name: values.get(f"treat_{i}", "clear")
        for i, field in enumerate(fields)
        if values.get(f"col_{i}")
    }
    if not columns:
        errors.add("columns", "Choose at least one column.")
    request = _request_model(values, ref, actor.agency_slug or "", columns, errors)
    if request is not None and not errors:
        failure: CivicshareError | None = None
        with visitor.unit() as db:
            try:
                agreement = policy.request_agreement(db=db, actor=actor, data=request)
                agreement_id = agreement.public_id
            except (Invalid, Conflict, Forbidden, NotFound) as exc:
                failure = exc
        if failure is None:
            return redirect(visitor, f"/agreements/{agreement_id}")
        errors.add(_field_of(failure), failure.message)
    return _request_page(visitor, ref, values, columns, errors, status=422)


@router.get("/agreements/{agreement_id}")
def agreement_page(visitor: VisitorDep, agreement_id: str) -> Response:
    return _agreement_page(visitor, agreement_id, FieldErrors(), "")


@router.post("/agreements/{agreement_id}/{decision}")
async def decide(visitor: FormVisitorDep, agreement_id: str, decision: str) -> Response:
    actor = visitor.require_actor()
    form = await visitor.request.form()
    reason = str(form.get("reason", "") or "").strip()[:4000]
    actions = {
        "approve": policy.approve_agreement,
        "reject": policy.reject_agreement,
        "revoke": policy.revoke_agreement,
    }
    if decision not in actions:
        raise NotFound("there is no such decision", code="not_found")
    errors = FieldErrors()
    if decision in {"reject", "revoke"} and not reason:
        errors.add("reason", f"Say why you {decision} this agreement.")
        return _agreement_page(visitor, agreement_id, errors, reason, status=422)
    failure: CivicshareError | None = None
    with visitor.unit() as db:
        try:
            actions[decision](db=db, actor=actor, agreement_id=agreement_id, reason=reason or None)
        except (Conflict, Invalid) as exc:
            failure = exc
    if failure is not None:
        errors.add("reason", failure.message)
        return _agreement_page(visitor, agreement_id, errors, reason, status=409)
    return redirect(visitor, f"/agreements/{agreement_id}")


@router.get("/agreements/{agreement_id}/odrl.json")
def agreement_odrl(visitor: VisitorDep, agreement_id: str) -> Response:
    actor = visitor.require_actor()
    with visitor.read() as db:
        agreement = policy.get_agreement(db=db, actor=actor, agreement_id=agreement_id)
        document = odrl_agreement(agreement, base_url=visitor.hub.settings.public_url)
    return Response(
        json.dumps(document, indent=2),
        media_type="application/ld+json",
        headers={"Content-Disposition": f'attachment; filename="{agreement_id}.odrl.json"'},
    )


def _agreement_page(
    visitor: Visitor, agreement_id: str, errors: FieldErrors, reason: str, *, status: int = 200
) -> Response:
    actor = visitor.require_actor()
    with visitor.read() as db:
        agreement = policy.get_agreement(db=db, actor=actor, agreement_id=agreement_id)
        read = AgreementRead.of(agreement)
        odrl = odrl_agreement(agreement, base_url=visitor.hub.settings.public_url)
    # The agreement's audit trail, read in a unit of its own.
    history = _history(visitor, agreement_id)
    steward_of_provider = actor.role.value == "steward" and actor.agency_slug == read.provider
    context = {
        "agreement": read,
        "odrl": json.dumps(odrl, indent=2),
        "history": history,
        "may_decide": steward_of_provider and read.state is State.requested,
        "may_revoke": steward_of_provider and read.state in {State.approved, State.active},
        "errors": errors,
        "reason": reason,
    }
    return render(visitor, "agreement.html", context, status=status)


def _history(visitor: Visitor, agreement_id: str) -> list[dict[str, Any]]:
    """The audit records naming this agreement that the viewer may read, newest first."""
    actor = visitor.require_actor()
    with visitor.read() as db:
        try:
            page = audit.list_records(db, actor=actor, limit=HISTORY_LIMIT)
        except Forbidden:
            return []
    return [r.record for r in page.records if r.record.get("agreement") == agreement_id]


def _request_page(
    visitor: Visitor,
    ref: str,
    values: dict[str, str],
    chosen: dict[str, str] | None,
    errors: FieldErrors,
    *,
    status: int = 200,
) -> Response:
    actor = visitor.require_actor()
    with visitor.read() as db:
        dataset = catalog.get_visible_dataset(db=db, actor=actor, ref=ref)
        fields = catalog.current_schema(db=db, dataset=dataset).fields
        title = dataset.title
    columns = [
        {
            "index": i,
            "field": field,
            "checked": chosen is None or field.name in chosen,
            "treatment": (chosen or {}).get(field.name) or proposed_treatment(field),
        }
        for i, field in enumerate(fields)
    ]
    context = {
        "ref": ref,
        "dataset_title": title,
        "values": values,
        "columns": columns,
        "treatments": TREATMENTS,
        "purposes": PURPOSES,
        "errors": errors,
    }
    return render(visitor, "agreement_request.html", context, status=status)


def _request_model(
    values: dict[str, str],
    ref: str,
    recipient: str,
    columns: dict[str, str],
    errors: FieldErrors,
) -> AgreementRequest | None:
    starts = _day(values.get("valid_from", ""), "valid_from", errors)
    ends = _day(values.get("valid_until", ""), "valid_until", errors)
    if not columns or starts is None or ends is None:
        return None
    try:
        return AgreementRequest(
            title=values.get("title", ""),
            recipient=recipient,
            purpose=values.get("purpose", ""),
            purpose_text=values.get("purpose_text", ""),
            legal_basis=values.get("legal_basis", ""),
            valid_from=starts,
            valid_until=ends,
            datasets=[
                {"dataset": ref, "columns": columns, "row_filter": values.get("row_filter") or None}
            ],
            aggregate_only=bool(values.get("aggregate_only")),
            allow_history=bool(values.get("allow_history")),
            min_cell=values.get("min_cell") or 11,
        )
    except ValidationError as exc:
        errors.add_validation(exc)
        if "datasets" in errors:
            errors.add("columns", errors.pop("datasets"))
        return None
    except Invalid as exc:  # a treatment the policy does not know
        errors.add(_field_of(exc), exc.message)
        return None


def _day(raw: str, name: str, errors: FieldErrors) -> dt.datetime | None:
    try:
        day = dt.date.fromisoformat(raw)
    except ValueError:
        errors.add(name, "Enter a date as YYYY-MM-DD.")
        return None
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def _field_of(error: CivicshareError) -> str:
    """Which form field a service error belongs to, so it is shown next to it."""
    by_code = {
        "invalid_purpose": "purpose",
        "invalid_window": "valid_until",
        "sensitive_requires_justification": "columns",
        "invalid_treatment": "columns",
        "unknown_column": "columns",
        "invalid_row_filter": "row_filter",
    }
    return by_code.get(error.code, "form")
