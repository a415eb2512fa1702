"""`civicshare agreement ...` and `civicshare objection ...`"""

from __future__ import annotations

import datetime as dt
import sys
from typing import Annotated

import typer

from civicshare.cli.agency import validated
from civicshare.cli.common import AsOpt, JsonOpt, emit, open_hub, print_json, unit
from civicshare.errors import Invalid
from civicshare.policy import service
from civicshare.policy.models import (
    PURPOSES,
    AgreementRead,
    AgreementRequest,
    ObjectionCreate,
    ObjectionRead,
    State,
)
from civicshare.policy.odrl import odrl_agreement

agreement_app = typer.Typer(help="Data-sharing agreements.", no_args_is_help=True)
objection_app = typer.Typer(help="Residents' objections (consent registry).", no_args_is_help=True)

LIST_COLUMNS = ["id", "provider", "recipient", "purpose", "state", "aggregate_only", "valid_until"]


def _columns(specs: list[str]) -> dict[str, str]:
    columns: dict[str, str] = {}
    for spec in specs:
        name, sep, treatment = spec.partition("=")
        if not sep or not name.strip():
            raise Invalid(f"--column takes NAME=TREATMENT, not '{spec}'", code="validation_error")
        columns[name.strip()] = treatment.strip() or "clear"
    return columns


def _moment(text: str | None, default: dt.datetime) -> dt.datetime:
    if text is None:
        return default
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise Invalid(f"'{text}' is not an ISO date or datetime", code="validation_error") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


@agreement_app.command("request")
def request(
    dataset: Annotated[str, typer.Option(help="Provider dataset, agency.dataset.")],
    recipient: Annotated[str, typer.Option(help="Recipient agency slug.")],
    purpose: Annotated[str, typer.Option(help=f"One of: {', '.join(PURPOSES)}.")],
    legal_basis: Annotated[str, typer.Option(help="The law or contract allowing the sharing.")],
    column: Annotated[
        list[str], typer.Option(help="NAME=TREATMENT (clear, redact, show_last(4), pseudonym, ...)")
    ],
    title: Annotated[str | None, typer.Option()] = None,
    purpose_text: Annotated[str, typer.Option(help="Free-text purpose.")] = "",
    row_filter: Annotated[
        str | None, typer.Option(help="SQL predicate over provider columns.")
    ] = None,
    valid_from: Annotated[
        str | None, typer.Option("--from", help="ISO start (default now).")
    ] = None,
    valid_until: Annotated[
        str | None, typer.Option("--until", help="ISO end (default +1 year).")
    ] = None,
    aggregate_only: Annotated[bool, typer.Option("--aggregate-only")] = False,
    allow_history: Annotated[
        bool,
        typer.Option(
            "--allow-history",
            help="Recipients may read past versions and the change data feed (Delta Sharing).",
        ),
    ] = False,
    min_cell: Annotated[int, typer.Option(help="Smallest count released (aggregate-only).")] = 11,
    max_queries_per_day: Annotated[int | None, typer.Option()] = None,
    max_rows_per_day: Annotated[int | None, typer.Option()] = None,
    user: Annotated[list[str] | None, typer.Option(help="Only these recipient users.")] = None,
    allow_sensitive: Annotated[bool, typer.Option("--allow-sensitive")] = False,
    justification: Annotated[
        str | None, typer.Option(help="Why sensitive columns are clear.")
    ] = None,
    as_email: AsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Request an agreement (the provider's steward approves it)."""
    now = dt.datetime.now(dt.UTC)
    data = validated(
        AgreementRequest,
        title=title or f"{dataset} for {recipient} ({purpose})",
        recipient=recipient,
        recipient_users=user or [],
        purpose=purpose,
        purpose_text=purpose_text,
        legal_basis=legal_basis,
        valid_from=_moment(valid_from, now),
        valid_until=_moment(valid_until, now + dt.timedelta(days=365)),
        datasets=[{"dataset": dataset, "columns": _columns(column), "row_filter": row_filter}],
        aggregate_only=aggregate_only,
        allow_history=allow_history,
        min_cell=min_cell,
        max_queries_per_day=max_queries_per_day,
        max_rows_per_day=max_rows_per_day,
        allow_sensitive=allow_sensitive,
        sensitive_justification=justification,
    )
    hub = open_hub()
    with unit(hub, as_email) as (db, actor):
        result = AgreementRead.of(service.request_agreement(db=db, actor=actor, data=data))
    emit(result, as_json=as_json)


def _decision(
    verb: str, agreement_id: str, reason: str | None, as_email: str | None
) -> AgreementRead:
    decide = {
        "approve": service.approve_agreement,
        "reject": service.reject_agreement,
        "revoke": service.revoke_agreement,
    }[verb]
    hub = open_hub()
    with unit(hub, as_email) as (db, actor):
        return AgreementRead.of(
            decide(db=db, actor=actor, agreement_id=agreement_id, reason=reason)
        )


ReasonOpt = Annotated[str | None, typer.Option(help="Recorded with the decision.")]


@agreement_app.command("approve")
def approve(
    agreement_id: str, reason: ReasonOpt = None, as_email: AsOpt = None, as_json: JsonOpt = False
) -> None:
    """Approve a requested agreement (provider steward)."""
    emit(_decision("approve", agreement_id, reason, as_email), as_json=as_json)


@agreement_app.command("reject")
def reject(
    agreement_id: str, reason: ReasonOpt = None, as_email: AsOpt = None, as_json: JsonOpt = False
) -> None:
    """Reject a requested agreement (provider steward)."""
    emit(_decision("reject", agreement_id, reason, as_email), as_json=as_json)


@agreement_app.command("revoke")
def revoke(
    agreement_id: str, reason: ReasonOpt = None, as_email: AsOpt = None, as_json: JsonOpt = False
) -> None:
    """Revoke an agreement; the next query under it is refused."""
    emit(_decision("revoke", agreement_id, reason, as_email), as_json=as_json)


@agreement_app.command("list")
def list_(
    agency: Annotated[str | None, typer.Option(help="As provider or recipient.")] = None,
    state: Annotated[State | None, typer.Option()] = None,
    as_email: AsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List agreements you may see."""
    hub = open_hub()
    with unit(hub, as_email) as (db, actor):
        rows = [
            AgreementRead.of(a)
            for a in service.list_agreements(db=db, actor=actor, agency=agency, state=state)
        ]
    emit(rows, as_json=as_json, title="Agreements", columns=LIST_COLUMNS)


@agreement_app.command("show")
def show(agreement_id: str, as_email: AsOpt = None, as_json: JsonOpt = False) -> None:
    """Show one agreement."""
    hub = open_hub()
    with unit(hub, as_email) as (db, actor):
        result = AgreementRead.of(
            service.get_agreement(db=db, actor=actor, agreement_id=agreement_id)
        )
    emit(result, as_json=as_json)


@agreement_app.command("export")
def export(agreement_id: str, as_email: AsOpt = None) -> None:
    """Print the agreement as ODRL 2.2 JSON-LD."""
    hub = open_hub()
    with unit(hub, as_email) as (db, actor):
        found = service.get_agreement(db=db, actor=actor, agreement_id=agreement_id)
        document = odrl_agreement(found, base_url=hub.settings.public_url)
    print_json(document)


@objection_app.command("register")
def objection_register(
    agency: Annotated[str, typer.Option(help="The agency holding the resident's records.")],
    field: Annotated[str, typer.Option(help="Identifier column, e.g. resident_id.")],
    purpose: Annotated[list[str], typer.Option(help="Purposes objected to (repeatable).")],
    as_email: AsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Register an objection; the identifier is read from stdin and stored only as a keyed hash."""
    value = sys.stdin.readline().strip()
    data = validated(ObjectionCreate, agency=agency, field=field, value=value, purposes=purpose)
    hub = open_hub()
    with unit(hub, as_email) as (db, actor):
        result = ObjectionRead.of(
            service.register_objection(db=db, hub=hub, actor=actor, data=data)
        )
    emit(result, as_json=as_json)


@objection_app.command("withdraw")
def objection_withdraw(objection_id: str, as_email: AsOpt = None, as_json: JsonOpt = False) -> None:
    """Withdraw an objection."""
    hub = open_hub()
    with unit(hub, as_email) as (db, actor):
        result = ObjectionRead.of(
            service.withdraw_objection(db=db, actor=actor, objection_id=objection_id)
        )
    emit(result, as_json=as_json)


@objection_app.command("list")
def objection_list(
    agency: Annotated[str, typer.Option()], as_email: AsOpt = None, as_json: JsonOpt = False
) -> None:
    """List an agency's objections (never the identifiers)."""
    hub = open_hub()
    with unit(hub, as_email) as (db, actor):
        rows = [
            ObjectionRead.of(o) for o in service.list_objections(db=db, actor=actor, agency=agency)
        ]
    emit(
        rows,
        as_json=as_json,
        title="Objections",
        columns=["id", "field", "purposes", "withdrawn_at"],
    )


def register(app: typer.Typer) -> None:
    app.add_typer(agreement_app, name="agreement")
    app.add_typer(objection_app, name="objection")
