"""Agreements (request, decide, revoke, export), objections, and the policy view of a dataset."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
from sqlalchemy import ColumnElement, bindparam, select, update
from sqlalchemy.orm import Session

from civicshare.agency import service as agency_service
from civicshare.agency.models import Agency, Role
from civicshare.audit import service as audit
from civicshare.catalog import service as catalog
from civicshare.catalog.models import Dataset
from civicshare.catalog.tableschema import TableSchema
from civicshare.db import Database, utcnow
from civicshare.errors import Conflict, Forbidden, Invalid, NotFound, RateLimited
from civicshare.hub import Hub
from civicshare.permissions import Action, Actor, authorize, is_allowed
from civicshare.policy.models import (
    Agreement,
    AgreementDataset,
    AgreementRequest,
    AgreementTerms,
    AgreementUsage,
    DatasetGrant,
    Objection,
    ObjectionCreate,
    QueryableColumn,
    QueryableTable,
    State,
    Status,
    agreement_state,
)
from civicshare.policy.predicates import validate_row_filter
from civicshare.policy.treatments import check_applicable, hmac_hex, parse_treatment
from civicshare.policy.view import Exclusion, GrantedColumn, PolicyView
from civicshare.storage import service as storage
from civicshare.storage.models import DatasetVersion

MIN_JUSTIFICATION = 20
_AGREEMENTS = Agreement.__table__
_GRANTS = AgreementDataset.__table__
# The agreement columns a query decides on, in ``AgreementTerms`` order, then the grant's.
_TERM_FIELDS = (
    "id",
    "public_id",
    "purpose",
    "status",
    "valid_from",
    "valid_until",
    "aggregate_only",
    "min_cell",
    "max_queries_per_day",
    "max_rows_per_day",
)
_TERMS = (
    select(
        *(_AGREEMENTS.c[name] for name in _TERM_FIELDS),
        _AGREEMENTS.c.recipient_users,
        _GRANTS.c.columns,
        _GRANTS.c.row_filter,
    )
    .join_from(_AGREEMENTS, _GRANTS, _GRANTS.c.agreement_id == _AGREEMENTS.c.id)
    .where(
        _GRANTS.c.dataset_id == bindparam("dataset_id"),
        _AGREEMENTS.c.recipient_agency_id == bindparam("agency_id"),
    )
    .order_by(_AGREEMENTS.c.id.desc())
)
# Built once: constructing a statement costs more than running these one-index lookups.
_LIVE_OBJECTIONS = select(Objection.field, Objection.subject_hash, Objection.purposes).where(
    Objection.agency_id == bindparam("agency_id"),
    Objection.withdrawn_at.is_(None),
    Objection.field.in_(bindparam("fields", expanding=True)),
)

# ---------------------------------------------------------------------------- agreements


def request_agreement(*, db: Session, actor: Actor, data: AgreementRequest) -> Agreement:
    """A recipient asks a provider for access; nothing is readable until a steward approves."""
    recipient = agency_service.get_agency(db=db, slug=data.recipient)
    authorize(actor, Action.agreement_request, agency_id=recipient.id)
    _check_window(data.valid_from, data.valid_until)
    datasets = [_discoverable(db, actor, grant.dataset) for grant in data.datasets]
    providers = {dataset.agency_id for dataset in datasets}
    if len(providers) != 1:
        raise Invalid("one agreement covers datasets of one provider", code="several_providers")
    provider_id = providers.pop()
    if provider_id == recipient.id:
        raise Invalid("an agency needs no agreement for its own data", code="same_agency")
    users = _recipient_users(db, recipient, [str(email) for email in data.recipient_users])
    grants = [
        _grant(db, dataset, grant) for dataset, grant in zip(datasets, data.datasets, strict=True)
    ]
    sensitive = _sensitive_in_clear(db, grants)
    _check_sensitive(sensitive, data.allow_sensitive, data.sensitive_justification)
    agreement = Agreement(
        public_id="agr_" + secrets.token_hex(8),
        provider_agency_id=provider_id,
        recipient_agency_id=recipient.id,
        recipient_users=users,
        title=data.title,
        purpose=data.purpose,
        purpose_text=data.purpose_text,
        legal_basis=data.legal_basis,
        valid_from=data.valid_from,
        valid_until=data.valid_until,
        status=Status.requested.value,
        aggregate_only=data.aggregate_only,
        allow_history=data.allow_history,
        min_cell=data.min_cell,
        max_queries_per_day=data.max_queries_per_day,
        max_rows_per_day=data.max_rows_per_day,
        allow_sensitive=data.allow_sensitive,
        sensitive_justification=data.sensitive_justification if sensitive else None,
        requested_by=actor.email,
        grants=grants,
    )
    db.add(agreement)
    db.flush()
    details: dict[str, Any] = {
        "recipient": recipient.slug,
        "datasets": [dataset.ref for dataset in datasets],
        "aggregate_only": data.aggregate_only,
        "allow_history": data.allow_history,
    }
    if sensitive:
        details["sensitive_clear"] = sensitive
        details["sensitive_justification"] = data.sensitive_justification
    _audit(db, actor, "agreement.request", agreement, details)
    return agreement


def _check_window(start: dt.datetime, end: dt.datetime) -> None:
    if start.tzinfo is None or end.tzinfo is None:
        raise Invalid("validity dates need a time zone (e.g. ...Z)", code="naive_datetime")
    if end <= start:
        raise Invalid("valid_until must be after valid_from", code="invalid_window")


def _discoverable(db: Session, actor: Actor, ref: str) -> Dataset:
    dataset = catalog.get_dataset(db=db, ref=ref)
    if not catalog.can_discover(actor, dataset):
        raise NotFound(f"no dataset '{ref}'", code="dataset_not_found")
    return dataset


def _recipient_users(db: Session, recipient: Agency, emails: list[str]) -> list[str]:
    named = []
    for email in emails:
        user = agency_service.get_user(db=db, email=email)
        if user.agency_id != recipient.id:
            raise Invalid(f"{email} is not a user of {recipient.slug}", code="not_recipient_user")
        named.append(user.email)
    return sorted(set(named))


def _grant(db: Session, dataset: Dataset, grant: DatasetGrant) -> AgreementDataset:
    schema = catalog.current_schema(db=db, dataset=dataset)
    arrow = schema.arrow_schema()
    columns: list[list[str]] = []
    for name, spec in grant.columns.items():
        if name not in arrow.names:
            raise Invalid(
                f"'{name}' is not a column of {dataset.ref}",
                code="unknown_column",
                details={"column": name, "dataset": dataset.ref},
            )
        treatment = parse_treatment(spec)
        check_applicable(treatment, name, arrow.field(name).type)
        columns.append([name, treatment.spec])
    row_filter = validate_row_filter(grant.row_filter, arrow.names) if grant.row_filter else None
    return AgreementDataset(dataset=dataset, columns=columns, row_filter=row_filter)


def _sensitive_in_clear(db: Session, grants: Sequence[AgreementDataset]) -> list[str]:
    found = []
    for grant in grants:
        schema = catalog.current_schema(db=db, dataset=grant.dataset)
        for name, spec in grant.columns:
            if spec == "clear" and schema.field(name).classification == "sensitive":
                found.append(f"{grant.dataset.ref}.{name}")
    return found


def _check_sensitive(sensitive: list[str], allowed: bool, justification: str | None) -> None:
    if not sensitive:
        return
    if not allowed or not justification or len(justification.strip()) < MIN_JUSTIFICATION:
        raise Invalid(
            f"sensitive columns in clear ({', '.join(sensitive)}) need --allow-sensitive and a "
            f"written justification of at least {MIN_JUSTIFICATION} characters",
            code="sensitive_requires_justification",
            details={"columns": sensitive},
        )


def get_agreement(*, db: Session, actor: Actor, agreement_id: str) -> Agreement:
    agreement = db.scalar(select(Agreement).where(Agreement.public_id == agreement_id))
    if agreement is None or not _may_read(actor, agreement):
        raise NotFound(f"no agreement '{agreement_id}'", code="agreement_not_found")
    return agreement


def _may_read(actor: Actor, agreement: Agreement) -> bool:
    return any(
        is_allowed(actor, Action.agreement_read, agency_id=agency_id)
        for agency_id in (agreement.provider_agency_id, agreement.recipient_agency_id)
    )


def list_agreements(
    *, db: Session, actor: Actor, agency: str | None = None, state: State | None = None
) -> list[Agreement]:
    """Agreements the caller may read: as provider or recipient (all, for admins/auditors)."""
    query = select(Agreement).order_by(Agreement.id)
    if agency is not None:
        target = agency_service.get_agency(db=db, slug=agency)
        query = query.where(
            (Agreement.provider_agency_id == target.id)
            | (Agreement.recipient_agency_id == target.id)
        )
    found = [a for a in db.scalars(query).unique() if _may_read(actor, a)]
    return [a for a in found if state is None or a.state() is state]


def approve_agreement(
    *, db: Session, actor: Actor, agreement_id: str, reason: str | None = None
) -> Agreement:
    return _decide(db, actor, agreement_id, Status.approved, reason)


def reject_agreement(
    *, db: Session, actor: Actor, agreement_id: str, reason: str | None = None
) -> Agreement:
    return _decide(db, actor, agreement_id, Status.rejected, reason)


def _decide(
    db: Session, actor: Actor, agreement_id: str, decision: Status, reason: str | None
) -> Agreement:
    agreement = get_agreement(db=db, actor=actor, agreement_id=agreement_id)
    authorize(actor, Action.agreement_decide, agency_id=agreement.provider_agency_id)
    if agreement.status != Status.requested.value:
        raise Conflict(
            f"agreement {agreement_id} is {agreement.state().value}, not requested",
            code="agreement_not_requested",
        )
    agreement.status = decision.value
    agreement.decided_by = actor.email
    agreement.decided_at = utcnow()
    agreement.decision_reason = reason
    action = "agreement.approve" if decision is Status.approved else "agreement.reject"
    _audit(db, actor, action, agreement, {"reason": reason} if reason else None)
    return agreement


def revoke_agreement(
    *, db: Session, actor: Actor, agreement_id: str, reason: str | None = None
) -> Agreement:
    """Stop access at once: the next query (even in an open session) is refused."""
    agreement = get_agreement(db=db, actor=actor, agreement_id=agreement_id)
    authorize(actor, Action.agreement_decide, agency_id=agreement.provider_agency_id)
    if agreement.status != Status.approved.value:
        raise Conflict(
            f"agreement {agreement_id} is {agreement.state().value}; only approved ones revoke",
            code="agreement_not_approved",
        )
    # A window that closed before the sweep noticed: its expiry comes first in the log.
    _record_expiry(db, agreement, utcnow())
    agreement.status = Status.revoked.value
    agreement.revoked_by = actor.email
    agreement.revoked_at = utcnow()
    agreement.decision_reason = reason
    _audit(db, actor, "agreement.revoke", agreement, {"reason": reason} if reason else None)
    return agreement


def _audit(
    db: Session,
    actor: Actor,
    action: str,
    agreement: Agreement,
    details: dict[str, Any] | None,
) -> None:
    audit.record(
        db,
        actor=actor,
        action=action,
        agency=agreement.provider.slug,
        resource=agreement.public_id,
        agreement=agreement.public_id,
        purpose=agreement.purpose,
        details=details,
    )


def record_expiries(*, db: Session, now: dt.datetime | None = None) -> list[Agreement]:
    """Record ``agreement.expire`` once for each approved agreement whose window has closed.

    Nobody acts when a window closes, so the hub notices: a served hub sweeps when it starts
    and every ``agreement_expiry_sweep_interval`` seconds (the record says when the window
    closed, in ``details.valid_until``, and is made at most that much later; revoking an expired
    agreement records its expiry first). Exactly once: the record and
    the agreement's ``expiry_recorded_at`` commit together, and rows another sweep (another hub
    process) holds are skipped, to be found done at the next pass.
    """
    moment = now or utcnow()
    due = (
        select(Agreement)
        .where(*_expiry_due(moment))
        .order_by(Agreement.id)
        .with_for_update(skip_locked=True, of=Agreement)
    )
    expired = list(db.scalars(due).unique())
    for agreement in expired:
        _record_expiry(db, agreement, moment)
    return expired


def _expiry_due(moment: dt.datetime) -> list[ColumnElement[bool]]:
    return [
        Agreement.status == Status.approved.value,
        Agreement.valid_until <= moment,
        Agreement.expiry_recorded_at.is_(None),
    ]


def _record_expiry(db: Session, agreement: Agreement, moment: dt.datetime) -> None:
    if agreement.expiry_recorded_at is not None or agreement.state(moment) is not State.expired:
        return
    agreement.expiry_recorded_at = moment
    audit.record(
        db,
        actor=None,
        action="agreement.expire",
        agency=agreement.provider.slug,
        resource=agreement.public_id,
        agreement=agreement.public_id,
        purpose=agreement.purpose,
        details={"valid_until": audit.timestamp(agreement.valid_until)},
    )


def sweep_expiries(database: Database) -> int:
    """``record_expiries`` in a unit of work of its own; how many it recorded.

    Looks first in a read-only snapshot, so a sweep that finds nothing due (the usual case)
    never takes SQLite's write turn.
    """
    with database.read_session() as db:
        due = db.scalar(select(Agreement.id).where(*_expiry_due(utcnow())).limit(1))
    if due is None:
        return 0
    with database.session() as db:
        return len(record_expiries(db=db))


# ---------------------------------------------------------------------------- objections


def objection_key(hub: Hub, agency_slug: str) -> bytes:
    return hub.keys.derive(b"objection:" + agency_slug.encode())


def register_objection(*, db: Session, hub: Hub, actor: Actor, data: ObjectionCreate) -> Objection:
    """Record a resident's objection; only a keyed hash of their identifier is stored."""
    agency = agency_service.get_agency(db=db, slug=data.agency)
    authorize(actor, Action.objection_manage, agency_id=agency.id)
    subject = hmac_hex(data.value.strip(), objection_key(hub, agency.slug))
    existing = db.scalar(
        select(Objection).where(
            Objection.agency_id == agency.id,
            Objection.field == data.field,
            Objection.subject_hash == subject,
        )
    )
    if existing is not None:
        existing.purposes = sorted(set(existing.purposes) | set(data.purposes))
        existing.withdrawn_at = None
        objection = existing
    else:
        objection = Objection(
            public_id="obj_" + secrets.token_hex(8),
            agency=agency,
            field=data.field,
            subject_hash=subject,
            purposes=data.purposes,
            created_by=actor.email,
        )
        db.add(objection)
    db.flush()
    audit.record(
        db,
        actor=actor,
        action="objection.register",
        agency=agency.slug,
        resource=objection.public_id,
        details={"field": data.field, "purposes": objection.purposes},
    )
    return objection


def withdraw_objection(*, db: Session, actor: Actor, objection_id: str) -> Objection:
    objection = db.scalar(select(Objection).where(Objection.public_id == objection_id))
    if objection is None:
        raise NotFound(f"no objection '{objection_id}'", code="objection_not_found")
    authorize(actor, Action.objection_manage, agency_id=objection.agency_id)
    objection.withdrawn_at = utcnow()
    audit.record(
        db,
        actor=actor,
        action="objection.withdraw",
        agency=objection.agency.slug,
        resource=objection.public_id,
    )
    return objection


def list_objections(*, db: Session, actor: Actor, agency: str) -> list[Objection]:
    target = agency_service.get_agency(db=db, slug=agency)
    authorize(actor, Action.objection_read, agency_id=target.id)
    query = select(Objection).where(Objection.agency_id == target.id).order_by(Objection.id)
    return list(db.scalars(query))


def _exclusions(
    db: Session, hub: Hub, dataset: Dataset, schema: pa.Schema, purpose: str | None
) -> tuple[Exclusion, ...]:
    if purpose is None:
        return ()
    # Checked on every query with a purpose (a new objection applies to the next one): the
    # three columns that matter, of the fields this schema has, in one indexed Core SELECT.
    rows = db.execute(
        _LIVE_OBJECTIONS, {"agency_id": dataset.agency_id, "fields": list(schema.names)}
    )
    by_field: dict[str, set[str]] = {}
    for field, subject_hash, purposes in rows:
        if purpose in purposes:
            by_field.setdefault(field, set()).add(subject_hash)
    if not by_field:
        return ()
    key = objection_key(hub, dataset.agency.slug)
    return tuple(Exclusion(field, key, frozenset(h)) for field, h in sorted(by_field.items()))


# ---------------------------------------------------------------------------- policy views


def policy_view(
    *,
    db: Session,
    hub: Hub,
    actor: Actor,
    dataset: Dataset,
    purpose: str | None,
    version: int | None = None,
) -> PolicyView:
    """What ``actor`` may see of ``dataset`` for ``purpose``, or ``Forbidden`` saying why not."""
    chosen = storage.get_version(db=db, dataset=dataset, version=version)
    table_schema = catalog.schema_by_hash(db=db, dataset=dataset, schema_hash=chosen.schema_hash)
    schema = table_schema.arrow_schema()

    def reader(columns: list[str]) -> pa.Table:
        stream = storage.read_chosen_version(
            db=db, hub=hub, dataset=dataset, chosen=chosen, schema=schema, columns=columns
        )
        return stream.read_all()

    common: dict[str, Any] = {
        "ref": dataset.ref,
        "schema": schema,
        "reader": reader,
        "version": chosen.number,
        "rows": chosen.row_count,
        "purpose": purpose,
        "exclusions": _exclusions(db, hub, dataset, schema, purpose),
        "dataset": dataset,
        "record_key_columns": tuple(table_schema.primaryKey),
        "record_key_salt": _record_key_salt(hub, dataset),
    }
    everything = tuple(GrantedColumn(name) for name in schema.names)
    if actor.role in {Role.steward, Role.analyst} and actor.belongs_to(dataset.agency_id):
        return PolicyView(columns=everything, access="own", **common)
    if dataset.visibility == "public":
        return PolicyView(columns=_public_columns(table_schema), access="public", **common)
    agreement = active_terms(db=db, actor=actor, dataset=dataset, purpose=purpose)
    check_limits(db=db, agreement=agreement)
    granted = tuple(
        GrantedColumn(name, parse_treatment(spec))
        for name, spec in agreement.columns
        if name in schema.names
    )
    return PolicyView(
        columns=granted,
        access="agreement",
        agreement_id=agreement.public_id,
        agreement=agreement,
        row_filter=agreement.row_filter,
        aggregate_only=agreement.aggregate_only,
        min_cell=agreement.min_cell,
        pseudonym_key=hub.keys.derive(b"pseudonym:" + agreement.public_id.encode()),
        **common,
    )


def _public_columns(schema: TableSchema) -> tuple[GrantedColumn, ...]:
    # Open data holds no personal columns (the catalog refuses them); deny any that slipped in.
    shown = [f.name for f in schema.fields if f.classification not in {"personal", "sensitive"}]
    return tuple(GrantedColumn(name) for name in shown)


def _record_key_salt(hub: Hub, dataset: Dataset) -> int:
    """Fixed per dataset, so a cell's key (and its perturbation) is the same for everyone."""
    return int.from_bytes(hub.keys.derive(b"cellkey:%d" % dataset.id)[:7], "big")


def active_terms(
    *, db: Session, actor: Actor, dataset: Dataset, purpose: str | None
) -> AgreementTerms:
    """The newest active agreement giving ``actor`` the dataset for ``purpose``, with its grant."""
    candidates = [
        terms
        for terms in agreements_for(db=db, agency_id=actor.agency_id, dataset_id=dataset.id)
        if actor.role in {Role.steward, Role.analyst}
        and (not terms.recipient_users or actor.email in terms.recipient_users)
    ]
    now = utcnow()
    for terms in candidates:
        if terms.purpose == purpose and terms.state(now) is State.active:
            return terms
    raise _refusal(dataset, purpose, candidates, now)


def agreements_for(*, db: Session, agency_id: int | None, dataset_id: int) -> list[AgreementTerms]:
    """Every agreement giving the agency the dataset (newest first), each with its grant.

    Read on every query, in one Core SELECT of the columns that decide (status and window
    included, so a revocation or an expiry applies to the very next query); no ORM objects.
    """
    if agency_id is None:  # an actor of no agency (the public) is a recipient of nothing
        return []
    rows = db.execute(_TERMS, {"dataset_id": dataset_id, "agency_id": agency_id})
    return [
        AgreementTerms(
            **{name: row[i] for i, name in enumerate(_TERM_FIELDS)},
            recipient_users=tuple(row.recipient_users or ()),
            columns=tuple((name, spec) for name, spec in row.columns),
            row_filter=row.row_filter,
        )
        for row in rows
    ]


# The error code of a refusal by an agreement that is no longer (or not yet) active.
_STATE_CODES = {
    State.revoked: "agreement_revoked",
    State.expired: "agreement_expired",
    State.rejected: "agreement_rejected",
}


def _refusal(
    dataset: Dataset, purpose: str | None, candidates: list[AgreementTerms], now: dt.datetime
) -> Forbidden:
    details: dict[str, Any] = {"dataset": dataset.ref, "purpose": purpose}
    if purpose is None and candidates:
        return Forbidden(
            f"reading {dataset.ref} needs a stated purpose",
            code="purpose_required",
            details=details,
        )
    same_purpose = [a for a in candidates if a.purpose == purpose]
    if not same_purpose:
        code = "wrong_purpose" if candidates else "no_agreement"
        message = (
            f"no agreement gives {dataset.ref} for purpose '{purpose}'"
            if candidates
            else f"no agreement gives you access to {dataset.ref}"
        )
        return Forbidden(message, code=code, details=details)
    latest = same_purpose[0]
    details["agreement"] = latest.public_id
    state = latest.state(now)
    code = _STATE_CODES.get(state, "agreement_not_active")
    return Forbidden(
        f"agreement {latest.public_id} for {dataset.ref} is {state.value}",
        code=code,
        details=details,
    )


def confirm_in_force(*, db: Session, agreements: Sequence[AgreementTerms]) -> None:
    """In the transaction that records a read: each agreement it relied on is still active.

    A query authorises in one transaction, reads and computes outside any (so a long query holds
    no lock), and records itself in a second. This re-reads the agreements there and keeps them
    from changing until that transaction ends (PostgreSQL: ``FOR SHARE`` row locks; SQLite: the
    write lock the transaction took at BEGIN), so a revocation or an expiry commits either
    before this check, and the result is refused, or after the read is on record.
    """
    wanted = {terms.id: terms for terms in agreements}
    if not wanted:
        return
    rows = db.execute(
        select(Agreement.id, Agreement.status, Agreement.valid_from, Agreement.valid_until)
        .where(Agreement.id.in_(sorted(wanted)))
        .with_for_update(read=True)
    )
    current = {row.id: agreement_state(row.status, row.valid_from, row.valid_until) for row in rows}
    for agreement_id, terms in sorted(wanted.items()):
        state = current.get(agreement_id, State.revoked)
        if state is not State.active:
            raise Forbidden(
                f"agreement {terms.public_id} was {state.value} while the query ran; "
                "its result is withheld",
                code=_STATE_CODES.get(state, "agreement_not_active"),
                details={"agreement": terms.public_id},
            )


def check_limits(*, db: Session, agreement: Agreement | AgreementTerms) -> None:
    if not agreement.limited:
        return
    usage = _usage(db, agreement, create=False)
    queries, rows = (usage.queries, usage.rows) if usage else (0, 0)
    if agreement.max_queries_per_day is not None and queries >= agreement.max_queries_per_day:
        raise RateLimited(
            f"agreement {agreement.public_id} allows {agreement.max_queries_per_day} queries a day",
            code="agreement_query_limit",
        )
    if agreement.max_rows_per_day is not None and rows >= agreement.max_rows_per_day:
        raise RateLimited(
            f"agreement {agreement.public_id} allows {agreement.max_rows_per_day} rows a day",
            code="agreement_row_limit",
        )


def rows_left_today(*, db: Session, agreement: Agreement | AgreementTerms) -> int | None:
    if agreement.max_rows_per_day is None:
        return None
    usage = _usage(db, agreement, create=False)
    return max(agreement.max_rows_per_day - (usage.rows if usage else 0), 0)


def record_usage(*, db: Session, agreement: Agreement | int, rows: int) -> None:
    """Count one query and its rows against the agreement (an ``Agreement`` or its row id:
    the query engine passes the id, as its session was rolled back while the query ran)."""
    agreement_id = agreement if isinstance(agreement, int) else agreement.id
    # One UPDATE that adds in the database (no read first, no lost update between two
    # concurrent queries); the day's row is created by the first query of the day.
    counted = db.execute(
        update(AgreementUsage)
        .where(AgreementUsage.agreement_id == agreement_id, AgreementUsage.day == utcnow().date())
        .values(queries=AgreementUsage.queries + 1, rows=AgreementUsage.rows + rows)
        .execution_options(synchronize_session=False)
    )
    if getattr(counted, "rowcount", 0) == 0:
        usage = _usage(db, agreement_id, create=True)
        assert usage is not None
        usage.queries += 1
        usage.rows += rows


def _usage(
    db: Session, agreement: Agreement | AgreementTerms | int, *, create: bool
) -> AgreementUsage | None:
    today = utcnow().date()
    agreement_id = agreement if isinstance(agreement, int) else agreement.id
    usage = db.scalar(
        select(AgreementUsage).where(
            AgreementUsage.agreement_id == agreement_id, AgreementUsage.day == today
        )
    )
    if usage is None and create:
        usage = AgreementUsage(agreement_id=agreement_id, day=today, queries=0, rows=0)
        db.add(usage)
    return usage


# ---------------------------------------------------------------------------- what may be queried


def queryable_tables(*, db: Session, actor: Actor) -> list[QueryableTable]:
    """The datasets ``actor`` may name in a query, by the rules of ``policy_view``.

    Own agency's and public datasets, then one entry per active agreement grant (with its
    purpose, treatments and limits). Datasets without any stored version are left out: there
    is nothing to query yet.
    """
    stored = set(db.scalars(select(DatasetVersion.dataset_id).distinct()))
    staff = actor.role in {Role.steward, Role.analyst}
    tables: list[QueryableTable] = []
    for dataset in catalog.list_datasets(db=db, actor=actor):
        if dataset.id not in stored:
            continue
        schema = catalog.current_schema(db=db, dataset=dataset)
        if staff and actor.belongs_to(dataset.agency_id):
            everything = [(f.name, "clear") for f in schema.fields]
            tables.append(_queryable(dataset, "own", schema, everything))
        elif dataset.visibility == "public":
            shown = [(c.name, "clear") for c in _public_columns(schema)]
            tables.append(_queryable(dataset, "public", schema, shown))
    if staff:
        tables.extend(_agreement_tables(db, actor, stored))
    return tables


def _agreement_tables(db: Session, actor: Actor, stored: set[int]) -> list[QueryableTable]:
    now = utcnow()
    query = select(Agreement).where(Agreement.recipient_agency_id == actor.agency_id)
    tables = []
    for agreement in db.scalars(query.order_by(Agreement.id)).unique():
        if agreement.state(now) is not State.active:
            continue
        if agreement.recipient_users and actor.email not in agreement.recipient_users:
            continue
        for grant in agreement.grants:
            if grant.dataset_id in stored and grant.dataset.purged_at is None:
                tables.append(_granted(db, agreement, grant))
    return tables


def _granted(db: Session, agreement: Agreement, grant: AgreementDataset) -> QueryableTable:
    schema = catalog.current_schema(db=db, dataset=grant.dataset)
    columns = [(name, parse_treatment(spec).spec) for name, spec in grant.columns]
    table = _queryable(grant.dataset, "agreement", schema, columns)
    return table.model_copy(
        update={
            "agreement": agreement.public_id,
            "agreement_title": agreement.title,
            "purpose": agreement.purpose,
            "row_filter": grant.row_filter,
            "aggregate_only": agreement.aggregate_only,
            "min_cell": agreement.min_cell if agreement.aggregate_only else None,
        }
    )


def _queryable(
    dataset: Dataset, access: str, schema: TableSchema, columns: list[tuple[str, str]]
) -> QueryableTable:
    types = {f.name: f.type for f in schema.fields}
    return QueryableTable(
        ref=dataset.ref,
        title=dataset.title,
        access=access,
        columns=[
            QueryableColumn(name=name, type=types.get(name, ""), treatment=treatment)
            for name, treatment in columns
            if name in types
        ],
    )
