"""The audit log: recording events, growing the Merkle tree, signing checkpoints, proofs, reads.

Other domains call ``record`` inside their own transaction, so an action and its record commit
together or not at all. A denied action rolls its transaction back; it records the denial with
``record_denied``, in a transaction of its own.

Sequence numbers come from the ``size`` counter row: ``UPDATE ... RETURNING`` takes its row lock
(PostgreSQL) or runs under the database write lock (SQLite, ``BEGIN IMMEDIATE``), and keeps it
until the caller's transaction ends. So indexes are unique and gap-free across threads and
processes: a rolled-back action releases its number to the next one, and records commit in index
order. The tree is grown afterwards, in batches (``integrate``), from the stored leaf hashes;
appenders never wait for hashing of interior nodes.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import logging
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypedDict, Unpack

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import ColumnElement, Dialect, insert, or_, select, update
from sqlalchemy.orm import Session

from civicshare.audit import canonical, merkle
from civicshare.audit.merkle import Block, ProofError
from civicshare.audit.models import (
    NODE_LEVEL_SHIFT,
    AuditCheckpoint,
    AuditCounter,
    AuditEntry,
    AuditNode,
    AuditSigningKey,
    ConsistencyProof,
    EntriesPage,
    EntryRead,
    InclusionProof,
    RecordPage,
    RecordRead,
    node_id,
)
from civicshare.audit.note import Checkpoint, Signer, Verifier, check_key_name, public_bytes
from civicshare.config import Settings
from civicshare.db import Base, Database, utc_for_comparison, utcnow
from civicshare.errors import Conflict, Invalid, NotFound
from civicshare.hub import Hub
from civicshare.permissions import Action, Actor, authorize, is_allowed

log = logging.getLogger("civicshare.audit")

Outcome = Literal["allowed", "denied"]
SIZE = "size"
INTEGRATED = "integrated"
INTEGRATION_BATCH = 50_000
MAX_ENTRIES_PER_PAGE = 1000
MAX_RECORDS_PER_PAGE = 1000

_COUNTERS = Base.metadata.tables[AuditCounter.__tablename__]
_ENTRIES = Base.metadata.tables[AuditEntry.__tablename__]
_CLAIM_INDEX = (
    update(_COUNTERS)
    .where(_COUNTERS.c.name == SIZE)
    .values(value=_COUNTERS.c.value + 1)
    .returning(_COUNTERS.c.value)
)
_INSERT_ENTRY = insert(_ENTRIES)
_INSERT_NODES = insert(Base.metadata.tables[AuditNode.__tablename__])


@dataclass(frozen=True)
class Recorded:
    """What ``record`` appended: its position and the exact bytes of the leaf."""

    index: int
    record: bytes
    leaf_hash: bytes


# ---------------------------------------------------------------------------- recording


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
) -> Recorded:
    """Append one event to the log, in the caller's transaction (they commit or vanish together).

    ``details`` must never hold personal values or secrets: identifiers, counts and hashes only.
    """
    if db.autoflush:
        db.flush()  # the action's pending rows first, as an ORM statement here would
    statements, cursor = _driver_statements(db)
    index = statements.claim_index(cursor)
    now = utcnow()
    body: dict[str, Any] = {
        "index": index,
        "time": timestamp(now),
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
    encoded = canonical.dumps(body)
    leaf = merkle.leaf_hash(encoded)
    statements.insert_entry(
        cursor,
        {
            "index": index,
            "record": encoded,
            "leaf_hash": leaf,
            "action": action,
            "actor_email": actor.email if actor else None,
            "agency": agency,
            "outcome": outcome,
            "resource": resource,
            "created_at": now,
        },
    )
    cursor.close()
    return Recorded(index, encoded, leaf)


class _DriverStatement:
    """A Core statement compiled once for a dialect, run on the driver's own cursor.

    ``record`` runs on every audited action, and SQLAlchemy's per-execution machinery (building
    an execution context, result objects, ORM events) costs several times what the database
    spends on these two one-row statements; the SQL, its parameter order and bind processors are
    still SQLAlchemy's, so types and quoting stay those of the models.
    """

    def __init__(self, statement: Any, dialect: Dialect, keys: Sequence[str] = ()) -> None:
        compiled = statement.compile(dialect=dialect, column_keys=list(keys) or None)
        self.sql: str = compiled.string
        self.order: Sequence[str] | None = compiled.positiontup
        self.constants: dict[str, Any] = dict(compiled.params)
        columns = {column.key: column for column in _ENTRIES.c}
        self.processors = {
            key: processor
            for key in keys
            if (processor := columns[key].type.bind_processor(dialect)) is not None
        }

    def parameters(self, values: Mapping[str, Any]) -> Any:
        merged = {**self.constants, **values}
        for key, processor in self.processors.items():
            merged[key] = processor(merged[key])
        return merged if self.order is None else tuple(merged[key] for key in self.order)


class _DriverStatements:
    def __init__(self, dialect: Dialect) -> None:
        self.claim = _DriverStatement(_CLAIM_INDEX, dialect)
        self.insert = _DriverStatement(_INSERT_ENTRY, dialect, [c.key for c in _ENTRIES.c])

    def claim_index(self, cursor: Any) -> int:
        cursor.execute(self.claim.sql, self.claim.parameters({}))
        return int(cursor.fetchone()[0]) - 1

    def insert_entry(self, cursor: Any, values: Mapping[str, Any]) -> None:
        cursor.execute(self.insert.sql, self.insert.parameters(values))


_compiled: dict[tuple[str, str], _DriverStatements] = {}


def _driver_statements(db: Session) -> tuple[_DriverStatements, Any]:
    """The statements for the session's driver and a cursor in its transaction (begun if not)."""
    connection = db.connection()
    dialect = connection.dialect
    key = (dialect.name, dialect.driver)
    statements = _compiled.get(key)
    if statements is None:
        statements = _compiled[key] = _DriverStatements(dialect)
    driver: Any = connection.connection.driver_connection  # the transaction's own connection
    return statements, driver.cursor()


class DeniedFields(TypedDict, total=False):
    """What a denial record may carry besides its actor, action and reason (see ``record``)."""

    agency: str | None
    resource: str | None
    version: int | None
    agreement: str | None
    purpose: str | None
    query_sha256: str | None
    details: Mapping[str, Any] | None


def record_denied(
    database: Database,
    *,
    actor: Actor | None,
    action: str,
    reason: str,
    **fields: Unpack[DeniedFields],
) -> Recorded:
    """Record a refused action in a transaction of its own (the action's was rolled back)."""
    with database.session() as db:
        return record(db, actor=actor, action=action, outcome="denied", reason=reason, **fields)


def sha256_hex(data: bytes | str) -> str:
    """The hex SHA-256 that records carry for query texts and results."""
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def timestamp(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


# ---------------------------------------------------------------------------- the tree


def _counter(db: Session, name: str, *, lock: bool = False) -> int:
    query = select(AuditCounter.value).where(AuditCounter.name == name)
    return int(db.execute(query.with_for_update() if lock else query).scalar_one())


def hold_appends(db: Session) -> None:
    """Take now the lock ``record`` takes (the size counter's row), held until the transaction ends.

    Every audited write holds it from its first record to its commit, so a transaction that
    takes it before reading serialises with all of them, without a lock order to deadlock on.
    """
    _counter(db, SIZE, lock=True)


def appended_size(db: Session) -> int:
    return _counter(db, SIZE)


def integrated_size(db: Session) -> int:
    return _counter(db, INTEGRATED)


def hash_lookup(db: Session) -> merkle.HashLookup:
    """Reads stored blocks (leaves and complete subtrees) from ``audit_node``."""

    def lookup(blocks: Collection[Block]) -> dict[Block, bytes]:
        if not blocks:
            return {}
        mask = (1 << NODE_LEVEL_SHIFT) - 1
        wanted = [node_id(level, index) for level, index in blocks]
        query = select(AuditNode.id, AuditNode.hash).where(AuditNode.id.in_(wanted))
        return {
            (packed >> NODE_LEVEL_SHIFT, packed & mask): value
            for packed, value in db.execute(query)
        }

    return lookup


def integrate(db: Session, *, limit: int | None = None) -> int:
    """Hash appended records into the tree (in batches); returns the tree's size.

    Every appended record, or at most ``limit`` of them, so that a caller who shares the write
    turn (the background ``Integrator`` on SQLite) holds it briefly. Holds the ``integrated``
    counter's lock, so one integrator at a time across processes.
    """
    done = _counter(db, INTEGRATED, lock=True)
    target = appended_size(db)
    if limit is not None:
        target = min(target, done + limit)
    lookup = hash_lookup(db)
    while done < target:
        end = min(target, done + INTEGRATION_BATCH)
        query = (
            select(AuditEntry.index, AuditEntry.leaf_hash)
            .where(AuditEntry.index >= done, AuditEntry.index < end)
            .order_by(AuditEntry.index)
        )
        rows = db.execute(query).all()
        for expected, (index, _hash) in enumerate(rows, start=done):
            if index != expected:
                raise _damaged(f"record {expected} is missing from the audit log", expected)
        if len(rows) != end - done:
            raise _damaged(f"record {done + len(rows)} is missing from the audit log", end)
        known = lookup(merkle.frontier(done))
        leaves = [value for _index, value in rows]
        created = merkle.integrate(done, leaves, known)
        # Leaves are copied into the tree too: proofs never depend on the records' table.
        created[:0] = [((0, index), value) for index, value in enumerate(leaves, start=done)]
        db.execute(
            _INSERT_NODES, [{"id": node_id(*block), "hash": value} for block, value in created]
        )
        done = end
    db.execute(update(AuditCounter).where(AuditCounter.name == INTEGRATED).values(value=done))
    return done


def _damaged(message: str, index: int) -> Conflict:
    log.error("audit log damaged: %s", message)
    return Conflict(message, code="audit_log_damaged", details={"index": index})


def _tree_of_size(db: Session, size: int) -> None:
    """Make sure the tree covers ``size`` leaves (integrating if needed), or refuse."""
    if size <= integrated_size(db):
        return
    if size > appended_size(db):
        raise Invalid(
            f"the audit log has fewer than {size} records",
            code="beyond_log",
            details={"size": appended_size(db)},
        )
    integrate(db)


def root_at(db: Session, size: int) -> bytes:
    _tree_of_size(db, size)
    return merkle.root_hash(size, hash_lookup(db))


def inclusion_proof(db: Session, *, index: int, size: int | None = None) -> InclusionProof:
    size = latest_checkpoint_size(db) if size is None else size
    if not 0 <= index < size:
        raise Invalid(f"record {index} is not in a tree of size {size}", code="bad_proof_range")
    _tree_of_size(db, size)
    path = _proof(lambda: merkle.inclusion_proof(index, size, hash_lookup(db)))
    return InclusionProof(leaf_index=index, tree_size=size, audit_path=path)


def consistency_proof(db: Session, *, first: int, second: int) -> ConsistencyProof:
    if not 0 <= first <= second:
        raise Invalid("consistency needs 0 <= first <= second", code="bad_proof_range")
    _tree_of_size(db, second)
    path = _proof(lambda: merkle.consistency_proof(first, second, hash_lookup(db)))
    return ConsistencyProof(first=first, second=second, consistency=path)


def _proof(compute: Any) -> list[str]:
    try:
        hashes: list[bytes] = compute()
    except ProofError as exc:
        raise Conflict(str(exc), code="audit_log_damaged") from exc
    return [base64.b64encode(value).decode() for value in hashes]


# ---------------------------------------------------------------------------- checkpoints


def log_origin(settings: Settings) -> str:
    """The log's name in its checkpoints and key: schema-less, no spaces or '+'."""
    return check_key_name(re.sub(r"[\s+]+", "-", settings.hub_name.strip()) + "/audit")


def ensure_signing_key(db: Session, hub: Hub) -> AuditSigningKey:
    """The checkpoint key, created (once, under the integration lock) if the hub has none."""
    _counter(db, INTEGRATED, lock=True)
    key = _signing_key(db)
    if key is not None:
        return key
    name = log_origin(hub.settings)
    private = Ed25519PrivateKey.generate()
    key = AuditSigningKey(
        name=name,
        public_key=public_bytes(private.public_key()),
        wrapped_private_key=hub.keys.wrap(private.private_bytes_raw(), context=_key_context(name)),
    )
    db.add(key)
    db.flush()
    log.info("created the audit checkpoint key %s", name)
    return key


def _signing_key(db: Session) -> AuditSigningKey | None:
    return db.scalar(select(AuditSigningKey).order_by(AuditSigningKey.id.desc()).limit(1))


def _key_context(name: str) -> bytes:
    return b"audit-signing-key:" + name.encode()


def verifier(db: Session) -> Verifier:
    key = _signing_key(db)
    if key is None:
        raise NotFound("the hub has no audit key yet", code="audit_key_missing")
    return Verifier(key.name, key.public_key)


def latest_checkpoint_size(db: Session) -> int:
    size = db.scalar(select(AuditCheckpoint.size).order_by(AuditCheckpoint.size.desc()).limit(1))
    return int(size or 0)


def current_checkpoint(db: Session) -> AuditCheckpoint | None:
    """The latest signed checkpoint if it covers exactly the appended records, else None.

    Reads only, so it may run in a read-only session: a log that has not grown since its last
    checkpoint (the usual case between bursts) is served without taking the write turn.
    """
    latest = db.scalar(select(AuditCheckpoint).order_by(AuditCheckpoint.size.desc()).limit(1))
    # A log shorter than its checkpoint is left to ``checkpoint``, which reports the damage.
    if latest is None or latest.size != appended_size(db):
        return None
    return latest


def latest_signed(hub: Hub) -> AuditCheckpoint:
    """``checkpoint`` in units of work of its own: a read, and a write only if there is news."""
    with hub.db.read_session() as db:
        current = current_checkpoint(db)
    if current is not None:
        return current
    with hub.db.session() as db:
        return checkpoint(db, hub)


def checkpoint(db: Session, hub: Hub) -> AuditCheckpoint:
    """The latest signed checkpoint, after signing a new one if the log has grown.

    A new checkpoint is signed only if it is consistent with the previous one (checked with a
    consistency proof from the stored tree), so the hub never signs a fork. If records were
    removed after signing, the last checkpoint is served unchanged and verifiers see the gap.
    """
    key = ensure_signing_key(db, hub)
    size = integrate(db)
    latest = db.scalar(select(AuditCheckpoint).order_by(AuditCheckpoint.size.desc()).limit(1))
    if latest is not None and latest.size >= size:
        if latest.size > size:
            log.error("audit log shorter (%d) than its last checkpoint (%d)", size, latest.size)
        return latest
    lookup = hash_lookup(db)
    root = merkle.root_hash(size, lookup)
    if latest is not None:
        try:
            proof = merkle.consistency_proof(latest.size, size, lookup)
            merkle.verify_consistency(latest.size, size, latest.root_hash, root, proof)
        except ProofError as exc:
            raise _damaged(
                f"the stored tree is inconsistent with checkpoint {latest.size}: {exc}",
                latest.size,
            ) from exc
    private = hub.keys.unwrap(key.wrapped_private_key, context=_key_context(key.name))
    signer = Signer(key.name, Ed25519PrivateKey.from_private_bytes(private))
    note = signer.sign(Checkpoint(key.name, size, root).text())
    signed = AuditCheckpoint(size=size, root_hash=root, note=note, key_id=key.id)
    db.add(signed)
    db.flush()
    return signed


# ---------------------------------------------------------------------------- reading


def _visible_to(actor: Actor) -> ColumnElement[bool] | None:
    """None when the actor reads everything; else which records they may read."""
    if is_allowed(actor, Action.audit_read_all):
        return None
    authorize(actor, Action.audit_read_own)
    conditions = [AuditEntry.actor_email == actor.email]
    if actor.agency_slug and is_allowed(actor, Action.audit_read_agency, agency_id=actor.agency_id):
        conditions += _about_agency(actor.agency_slug)
    return or_(*conditions)


def _about_agency(slug: str) -> list[ColumnElement[bool]]:
    """Records about the agency: its ``agency`` column, or one of its datasets in ``resource``.

    A query joining several agencies' datasets (and a denied query) records no single agency;
    its ``resource`` lists every ``agency.dataset`` it read, comma-separated.
    """
    dataset = slug + "."
    return [
        AuditEntry.agency == slug,
        AuditEntry.resource.startswith(dataset, autoescape=True),
        AuditEntry.resource.contains("," + dataset, autoescape=True),
    ]


def entries(db: Session, *, actor: Actor, start: int, end: int) -> EntriesPage:
    """Records ``[start, end)`` (at most a page) as base64 leaf inputs, those the actor may read."""
    if start < 0 or end <= start:
        raise Invalid("entries need 0 <= start < end", code="bad_entries_range")
    visible = _visible_to(actor)
    # Nothing lies beyond the log. Bounds past it are never compared with the index column,
    # which PostgreSQL keeps in 32 bits: a larger parameter was an error there (a 500).
    end = min(end, start + MAX_ENTRIES_PER_PAGE, appended_size(db))
    if end <= start:
        return EntriesPage(entries=[], complete=visible is None)
    query = select(AuditEntry.index, AuditEntry.record).where(
        AuditEntry.index >= start, AuditEntry.index < end
    )
    if visible is not None:
        query = query.where(visible)
    rows = db.execute(query.order_by(AuditEntry.index)).all()
    return EntriesPage(
        entries=[
            EntryRead(index=index, leaf_input=base64.b64encode(value).decode())
            for index, value in rows
        ],
        complete=visible is None,
    )


@dataclass(frozen=True)
class RecordFilter:
    action: str | None = None
    actor: str | None = None
    agency: str | None = None
    outcome: str | None = None
    resource: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None


def list_records(
    db: Session,
    *,
    actor: Actor,
    where: RecordFilter | None = None,
    before: int | None = None,
    limit: int = 100,
) -> RecordPage:
    """The records the actor may read, newest first, filtered; page on with ``before``."""
    if not 1 <= limit <= MAX_RECORDS_PER_PAGE:
        raise Invalid(f"limit must be 1..{MAX_RECORDS_PER_PAGE}", code="bad_limit")
    query = select(AuditEntry)
    visible = _visible_to(actor)
    if visible is not None:
        query = query.where(visible)
    for condition in _conditions(where or RecordFilter()):
        query = query.where(condition)
    if before is not None:
        # Within the log, as in ``entries``: the index column is 32 bits on PostgreSQL.
        query = query.where(AuditEntry.index < min(before, appended_size(db)))
    found = list(db.scalars(query.order_by(AuditEntry.index.desc()).limit(limit)))
    next_before = found[-1].index if len(found) == limit else None
    return RecordPage(records=[RecordRead.of(entry) for entry in found], next_before=next_before)


def _conditions(where: RecordFilter) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if where.action:
        # A bare domain ("token") matches all its actions ("token.create", "token.revoke").
        if "." in where.action:
            conditions.append(AuditEntry.action == where.action)
        else:
            conditions.append(AuditEntry.action.startswith(where.action + ".", autoescape=True))
    if where.actor:
        conditions.append(AuditEntry.actor_email == where.actor.lower())
    if where.agency:
        conditions.append(or_(*_about_agency(where.agency)))
    if where.outcome:
        if where.outcome not in ("allowed", "denied"):
            raise Invalid("outcome is 'allowed' or 'denied'", code="bad_outcome")
        conditions.append(AuditEntry.outcome == where.outcome)
    if where.resource:
        conditions.append(AuditEntry.resource == where.resource)
    if where.since:
        conditions.append(AuditEntry.created_at >= utc_for_comparison(where.since))
    if where.until:
        conditions.append(AuditEntry.created_at < utc_for_comparison(where.until))
    return conditions
