"""Recording audit events. Other domains call ``record`` inside their own transaction."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from typing import Any, Literal

import rfc8785
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from civicshare.audit.models import AuditEntry
from civicshare.db import utcnow
from civicshare.permissions import Actor

Outcome = Literal["allowed", "denied"]


def leaf_hash(record: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + record).digest()


def record(
    db: Session,
    *,
    actor: Actor | None,
    action: str,
    outcome: Outcome = "allowed",
    reason: str | None = None,
    agency: str | None = None,
    resource: str | None = None,
    version: int | None = None,
    agreement: str | None = None,
    purpose: str | None = None,
    query_sha256: str | None = None,
    result_sha256: str | None = None,
    rows: int | None = None,
    details: Mapping[str, Any] | None = None,
) -> AuditEntry:
    """Append one event to the log, in the caller's transaction (they commit or vanish together).

    ``details`` must never hold personal values or secrets: identifiers, counts and hashes only.
    """
    index = _next_index(db)
    body: dict[str, Any] = {
        "index": index,
        "time": _timestamp(utcnow()),
        "actor": actor.audit_view() if actor else None,
        "action": action,
        "outcome": outcome,
    }
    optional = {
        "reason": reason,
        "agency": agency,
        "resource": resource,
        "version": version,
        "agreement": agreement,
        "purpose": purpose,
        "query_sha256": query_sha256,
        "result_sha256": result_sha256,
        "rows": rows,
        "details": dict(details) if details else None,
    }
    body.update({key: value for key, value in optional.items() if value is not None})
    encoded = rfc8785.dumps(body)
    entry = AuditEntry(
        index=index,
        record=encoded,
        leaf_hash=leaf_hash(encoded),
        action=action,
        actor_email=actor.email if actor else None,
        agency=agency,
    )
    db.add(entry)
    db.flush()
    return entry


def _next_index(db: Session) -> int:
    current = db.scalar(select(func.max(AuditEntry.index)))
    return 0 if current is None else current + 1


def _timestamp(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
