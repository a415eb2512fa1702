"""Running a governed query end to end: parse, authorise, rewrite, run, disclose, audit."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from sqlalchemy.orm import Session

from civicshare.audit import service as audit
from civicshare.catalog import service as catalog
from civicshare.errors import CivicshareError, Invalid, NotFound
from civicshare.hub import Hub
from civicshare.permissions import Action, Actor, authorize
from civicshare.policy import service as policy
from civicshare.policy.models import PURPOSES, AgreementTerms
from civicshare.policy.view import PolicyView
from civicshare.query.engine import (
    DEFAULT_MAX_ROWS,
    HARD_MAX_ROWS,
    REGROUP_MIN_ROWS,
    load_sources,
    run_plan,
)
from civicshare.query.formats import (
    FORMATS,
    body_sha256,
    check_format,
    json_body,
    render_binary,
)
from civicshare.query.parse import TableRef, parse_query, query_sha256
from civicshare.query.rewrite import Plan, plan_query
from civicshare.query.sandbox import DEFAULT_TIMEOUT_SECONDS

MAX_TIMEOUT_SECONDS = DEFAULT_TIMEOUT_SECONDS


@dataclass
class QueryResult:
    fmt: str
    media_type: str
    query_sha256: str
    audit_index: int
    table: pa.Table | None = None
    truncated: bool = False
    suppressed: list[dict[str, Any]] = field(default_factory=list)
    body: dict[str, Any] | None = None  # JSON results and explanations
    content: bytes | None = None  # CSV, Arrow, Parquet
    result_sha256: str | None = None
    explain: dict[str, Any] | None = None

    @property
    def rows(self) -> int:
        return 0 if self.table is None else int(self.table.num_rows)

    def response(self) -> dict[str, Any]:
        """The JSON body of ``POST /api/v1/query`` (results or explanation, plus audit index)."""
        payload = dict(self.body if self.body is not None else self.explain or {})
        payload["audit_index"] = self.audit_index
        return payload


def run_query(
    *,
    db: Session,
    hub: Hub,
    actor: Actor,
    sql: str,
    purpose: str | None,
    fmt: str = "json",
    max_rows: int | None = None,
    explain: bool = False,
    timeout: float | None = None,
) -> QueryResult:
    """Run (or explain) a governed query. Exactly one audit record either way.

    Call it in a unit of work of its own (as the API, CLI and portal do). It authorises and
    loads its sources in a read-only session (``_read_phase``), computes holding no database
    lock, and then, in the caller's session, re-checks the agreements it relied on and writes
    usage and the audit record, which the caller commits. Refusals are recorded in a
    transaction of their own, since the caller's rolls back.
    """
    digest = query_sha256(sql)
    refs: list[TableRef] = []
    try:
        authorize(actor, Action.query_run)
        check_format(fmt)
        _check_purpose(purpose)
        parsed = parse_query(sql)
        refs = parsed.refs
        with _read_phase(hub, db) as reading:
            views = {ref: _view(reading, hub, actor, ref, purpose) for ref in parsed.refs}
            plan = plan_query(parsed, views, regroup=_regroups(views.values()))
            if explain:
                return _explained(db, actor, plan, purpose)
            cap = _row_cap(reading, plan, max_rows)
            sources = load_sources(plan)
        # Only agreements with daily limits count their queries per day (the audit log holds
        # every query); the others skip the counter's UPDATE.
        counted = [view.agreement.id for view in plan.views if _limited(view)]
        # The data is in memory now. If the caller's own session did the reading, end its
        # transaction so a long query never holds database locks (SQLite's write lock).
        db.rollback()
        output = run_plan(plan, sources, max_rows=cap, timeout=_timeout(timeout))
    except CivicshareError as exc:
        db.rollback()
        _record_denial(hub, actor, digest, purpose, refs, exc)
        raise
    result = QueryResult(
        fmt=fmt,
        media_type=FORMATS[fmt],
        query_sha256=digest,
        audit_index=-1,
        table=output.table,
        truncated=output.truncated,
        suppressed=output.suppressed,
    )
    if fmt == "json":
        result.body = json_body(
            output.table, truncated=output.truncated, suppressed=output.suppressed
        )
        result.result_sha256 = body_sha256(result.body)
    else:
        result.content = render_binary(output.table, fmt)
        result.result_sha256 = body_sha256(result.content)
    # After rendering, so the write turn this takes is held only for the record itself.
    try:
        policy.confirm_in_force(db=db, agreements=_terms(plan.views))
    except CivicshareError as exc:
        db.rollback()
        _record_denial(hub, actor, digest, purpose, refs, exc)
        raise
    for agreement_id in counted:
        policy.record_usage(db=db, agreement=agreement_id, rows=result.rows)
    entry = audit.record(
        db,
        actor=actor,
        action="query.run",
        agency=_agency(plan.views),
        resource=",".join(str(ref) for ref in refs) or None,
        version=plan.views[0].version if len(plan.views) == 1 else None,
        agreement=_agreements(plan.views),
        purpose=purpose,
        query_sha256=digest,
        result_sha256=result.result_sha256,
        rows=result.rows,
        details=_details(plan, fmt, output.truncated, len(output.suppressed)),
    )
    result.audit_index = entry.index
    return result


@contextmanager
def _read_phase(hub: Hub, db: Session) -> Iterator[Session]:
    """Where a query authorises and loads its sources: a read-only session, so that reading
    and decrypting a large source holds no write lock (SQLite's, taken at BEGIN, would stop
    every other action of the hub meanwhile); the caller's own session if it already holds
    work of its own, which the query must see."""
    if db.in_transaction():
        yield db
        return
    with hub.db.read_session() as reading:
        yield reading


def _check_purpose(purpose: str | None) -> None:
    if purpose is not None and purpose not in PURPOSES:
        raise Invalid(
            f"unknown purpose '{purpose}'; use one of {', '.join(PURPOSES)}",
            code="invalid_purpose",
        )


def _view(db: Session, hub: Hub, actor: Actor, ref: TableRef, purpose: str | None) -> PolicyView:
    dataset = catalog.get_dataset(db=db, ref=ref.ref)
    try:
        return policy.policy_view(
            db=db, hub=hub, actor=actor, dataset=dataset, purpose=purpose, version=ref.version
        )
    except CivicshareError:
        if not catalog.can_discover(actor, dataset):
            # Hidden datasets look exactly like missing ones.
            raise NotFound(f"no dataset '{ref.ref}'", code="dataset_not_found") from None
        raise


def _regroups(views: Iterable[PolicyView]) -> bool:
    """Whether ``run_plan`` could run a grouping-first plan: only on large sources. Either
    plan gives the same result, so a wrong guess costs time, never correctness."""
    counts = [view.rows for view in views]
    return None in counts or sum(count or 0 for count in counts) >= REGROUP_MIN_ROWS


def _terms(views: Iterable[PolicyView]) -> list[AgreementTerms]:
    return [view.agreement for view in views if isinstance(view.agreement, AgreementTerms)]


def _limited(view: PolicyView) -> bool:
    return view.agreement is not None and bool(view.agreement.limited)


def _row_cap(db: Session, plan: Plan, max_rows: int | None) -> int:
    cap = min(max_rows or DEFAULT_MAX_ROWS, HARD_MAX_ROWS)
    if cap < 1:
        raise Invalid("max_rows must be at least 1", code="invalid_max_rows")
    for view in plan.views:
        if view.agreement is not None:
            left = policy.rows_left_today(db=db, agreement=view.agreement)
            if left is not None:
                cap = min(cap, left)
    return max(cap, 1)


def _timeout(timeout: float | None) -> float:
    if timeout is None:
        return DEFAULT_TIMEOUT_SECONDS
    if not 0 < timeout <= MAX_TIMEOUT_SECONDS:
        raise Invalid(
            f"timeout must be in (0, {MAX_TIMEOUT_SECONDS:g}] seconds", code="invalid_timeout"
        )
    return timeout


def _explained(db: Session, actor: Actor, plan: Plan, purpose: str | None) -> QueryResult:
    explanation = plan.explain()
    entry = audit.record(
        db,
        actor=actor,
        action="query.explain",
        agency=_agency(plan.views),
        resource=",".join(str(ref) for ref in plan.parsed.refs) or None,
        agreement=_agreements(plan.views),
        purpose=purpose,
        query_sha256=plan.parsed.sha256,
        rows=0,
    )
    return QueryResult(
        fmt="json",
        media_type=FORMATS["json"],
        query_sha256=plan.parsed.sha256,
        audit_index=entry.index,
        explain=explanation,
    )


def _agency(views: list[PolicyView]) -> str | None:
    agencies = sorted({view.ref.split(".")[0] for view in views})
    return agencies[0] if len(agencies) == 1 else None


def _agreements(views: list[PolicyView]) -> str | None:
    ids = sorted({view.agreement_id for view in views if view.agreement_id})
    return ",".join(ids) or None


def _details(plan: Plan, fmt: str, truncated: bool, suppressed: int) -> dict[str, Any]:
    return {
        "datasets": [f"{view.ref}@v{view.version}" for view in plan.views],
        "access": sorted({view.access for view in plan.views}),
        "format": fmt,
        "truncated": truncated,
        "suppressed_cells": suppressed,
        "aggregate_only": plan.aggregate is not None,
    }


def _record_denial(
    hub: Hub,
    actor: Actor,
    digest: str,
    purpose: str | None,
    refs: list[TableRef],
    error: CivicshareError,
) -> None:
    details = error.details if isinstance(error.details, dict) else {}
    agreement = details.get("agreement")
    audit.record_denied(
        hub.db,
        actor=actor,
        action="query.run",
        reason=error.code,
        resource=",".join(str(ref) for ref in refs) or None,
        agreement=agreement if isinstance(agreement, str) else None,
        purpose=purpose,
        query_sha256=digest,
        details={"status": error.status, "error": error.code},
    )
