"""Delta Sharing over the hub: shares, tables, snapshots, time travel, changes and files.

A share is an agreement (``agreement_<id>``) or the ``open_data`` share of public datasets; its
schemas are the provider agencies, its tables their datasets. Every row a recipient receives
comes from the policy view of the recipient's access (granted columns, treatments, row filter,
objections), encoded as in-memory Parquet, and every call and file is audited.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from civicshare.audit import service as audit
from civicshare.catalog import service as catalog
from civicshare.catalog.models import Dataset
from civicshare.errors import BadRequest, CivicshareError, Forbidden, Invalid, NotFound
from civicshare.hub import Hub
from civicshare.policy import service as policy
from civicshare.policy.models import Agreement
from civicshare.sharing import profiles, skipping
from civicshare.sharing.changes import CHANGE_TYPE, compute_changes
from civicshare.sharing.materialize import (
    Materialized,
    ParquetCache,
    ParquetPart,
    materialize,
    served_table,
)
from civicshare.sharing.profiles import Recipient
from civicshare.sharing.protocol import (
    UNSUPPORTED_OPERATION,
    ServedFile,
    change_line,
    file_line,
    metadata_line,
    protocol_line,
)
from civicshare.sharing.signing import FILE_URL_LABEL, FileGrant, sign_grant, verify_grant
from civicshare.sharing.spark import spark_compatible, spark_schema_string
from civicshare.storage import service as storage

URL_LIFETIME_SECONDS = 15 * 60
_TABLE_NAMESPACE = uuid.UUID("7d0f5a56-4f0e-4c43-9d0c-2f6f3b1f6a10")

# One cache per process: every request of a download (metadata, query, many byte ranges)
# shares one encoding of the content.
CACHE = ParquetCache()


# ---------------------------------------------------------------------------- tables


@dataclass(frozen=True)
class SharedTable:
    share: str
    dataset: Dataset
    agreement_id: str | None  # public id
    purpose: str | None
    history: bool

    @property
    def schema(self) -> str:
        return self.dataset.agency.slug

    @property
    def name(self) -> str:
        return self.dataset.slug

    @property
    def table_id(self) -> str:
        return str(uuid.uuid5(_TABLE_NAMESPACE, f"{self.share}/{self.dataset.id}"))

    def listing(self) -> dict[str, Any]:
        return {"name": self.name, "schema": self.schema, "share": self.share, "id": self.table_id}


def shares(recipient: Recipient) -> list[str]:
    names = [recipient.share]
    if recipient.agreement is not None:
        names.append(profiles.OPEN_DATA_SHARE)
    return names


def require_share(recipient: Recipient, share: str) -> str:
    name = share.lower()
    if name not in shares(recipient):
        raise NotFound(f"share '{share}' does not exist or is not shared with you")
    return name


def load_agreement(db: Session, public_id: str) -> Agreement:
    agreement = db.scalar(select(Agreement).where(Agreement.public_id == public_id))
    if agreement is None:
        raise NotFound(f"no agreement '{public_id}'", code="agreement_not_found")
    return agreement


def list_tables(*, db: Session, recipient: Recipient, share: str) -> list[SharedTable]:
    """The tables of a share the recipient may read, sorted by schema then name."""
    name = require_share(recipient, share)
    if name == profiles.OPEN_DATA_SHARE:
        tables = [
            SharedTable(name, dataset, None, None, history=True)
            for dataset in catalog.list_datasets(db=db, actor=None)
            if _has_data(db, dataset)
        ]
    else:
        assert recipient.agreement is not None
        agreement = load_agreement(db, recipient.agreement)
        tables = [
            SharedTable(
                name, grant.dataset, agreement.public_id, agreement.purpose, recipient.history
            )
            for grant in agreement.grants
            if grant.dataset.purged_at is None and _has_data(db, grant.dataset)
        ]
    return sorted(tables, key=lambda table: (table.schema, table.name))


def list_schemas(*, db: Session, recipient: Recipient, share: str) -> list[str]:
    return sorted({table.schema for table in list_tables(db=db, recipient=recipient, share=share)})


def get_table(
    *, db: Session, recipient: Recipient, share: str, schema: str, table: str
) -> SharedTable:
    for candidate in list_tables(db=db, recipient=recipient, share=share):
        if candidate.schema == schema.lower() and candidate.name == table.lower():
            return candidate
    raise NotFound(f"table '{share}.{schema}.{table}' does not exist or is not shared with you")


def tables_in_schema(
    *, db: Session, recipient: Recipient, share: str, schema: str
) -> list[SharedTable]:
    tables = list_tables(db=db, recipient=recipient, share=share)
    selected = [table for table in tables if table.schema == schema.lower()]
    if not selected:
        raise NotFound(f"schema '{share}.{schema}' does not exist or is not shared with you")
    return selected


def _has_data(db: Session, dataset: Dataset) -> bool:
    return bool(storage.list_versions(db=db, dataset=dataset))


# ---------------------------------------------------------------------------- versions


def parse_timestamp(text: str, *, parameter: str) -> dt.datetime:
    """The protocol's timestamps: ISO 8601 in UTC, e.g. ``2022-01-01T00:00:00Z``."""
    try:
        moment = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise Invalid(
            f"{parameter} must be an ISO 8601 timestamp such as 2022-01-01T00:00:00Z",
            code="bad_timestamp",
        ) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment


def latest_version(*, db: Session, table: SharedTable) -> int:
    return storage.get_version(db=db, dataset=table.dataset).number


def version_at_or_after(*, db: Session, table: SharedTable, moment: dt.datetime) -> int:
    """The earliest version committed at or after ``moment`` (``startingTimestamp``)."""
    for version in storage.list_versions(db=db, dataset=table.dataset):
        if version.created_at >= moment:
            return version.number
    raise Invalid(
        f"'{table.name}' has no version at or after {moment.isoformat()}", code="bad_timestamp"
    )


def resolve_version(
    *, db: Session, table: SharedTable, version: int | None, timestamp: str | None
) -> int:
    """The version a request reads: the latest, or (time travel) one by number or moment."""
    if version is None and timestamp is None:
        return latest_version(db=db, table=table)
    if not table.history:
        raise Forbidden(
            "this agreement does not share the table's history (version or timestamp)",
            code="history_not_shared",
        )
    if version is not None and timestamp is not None:
        raise Invalid("give version or timestamp, not both", code="bad_version")
    if version is not None:
        if version < 0:
            raise Invalid("version must be non-negative", code="bad_version")
        try:
            return storage.get_version(db=db, dataset=table.dataset, version=version).number
        except NotFound as exc:
            raise Invalid(exc.message, code="bad_version") from exc
    assert timestamp is not None
    moment = parse_timestamp(timestamp, parameter="timestamp")
    try:
        return storage.get_version(db=db, dataset=table.dataset, as_of=moment).number
    except NotFound as exc:
        raise Invalid(exc.message, code="bad_timestamp") from exc


def _commit_ms(db: Session, table: SharedTable, version: int) -> int:
    created = storage.get_version(db=db, dataset=table.dataset, version=version).created_at
    return int(created.timestamp() * 1000)


# ---------------------------------------------------------------------------- content


def _view(db: Session, hub: Hub, recipient: Recipient, table: SharedTable, version: int) -> Any:
    # Open data is read as the public reads it, whoever holds the profile: the same content
    # for everyone (and one cache entry), never an agency's own full view.
    actor = recipient.actor
    if table.agreement_id is None:
        actor = dataclasses.replace(actor, agency_id=None, agency_slug=None)
    view = policy.policy_view(
        db=db,
        hub=hub,
        actor=actor,
        dataset=table.dataset,
        purpose=table.purpose,
        version=version,
    )
    if view.aggregate_only:
        raise Forbidden(
            f"'{table.dataset.ref}' is shared for aggregate queries only, which Delta Sharing "
            "cannot carry; query it through the hub instead",
            code="aggregate_only",
        )
    return view


def _fingerprint(*parts: Any) -> str:
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _release(db: Session) -> None:
    """End the read transaction once the rows are in memory, before the long encoding, so a
    build never holds database locks (SQLite takes its write lock at BEGIN). Nothing has been
    written in it yet; the request's audit record goes in the next one."""
    db.rollback()


def recipient_rows(
    *, db: Session, hub: Hub, recipient: Recipient, table: SharedTable, version: int
) -> pa.RecordBatchReader:
    """The rows of a version as the recipient may see them (the policy view), streamed."""
    reader: pa.RecordBatchReader = _view(db, hub, recipient, table, version).arrow()
    return reader


def snapshot_content(
    *, db: Session, hub: Hub, recipient: Recipient, table: SharedTable, version: int
) -> Materialized:
    view = _view(db, hub, recipient, table, version)
    fingerprint = _fingerprint(
        "snapshot", table.dataset.id, version, view.explain(), hub.settings.sharing_rows_per_file
    )

    def build() -> Materialized:
        reader = view.arrow()
        _release(db)
        return materialize(
            reader,
            reader.schema,
            fingerprint=fingerprint,
            rows_per_file=hub.settings.sharing_rows_per_file,
        )

    return CACHE.get_or_build(fingerprint, build)


def change_content(
    *, db: Session, hub: Hub, recipient: Recipient, table: SharedTable, version: int
) -> Materialized:
    """The rows that changed in ``version``, compared with the version before it."""
    view = _view(db, hub, recipient, table, version)
    before = _view(db, hub, recipient, table, version - 1) if version > 1 else None
    explained = before.explain() if before is not None else None
    fingerprint = _fingerprint(
        "cdf",
        table.dataset.id,
        version,
        view.explain(),
        explained,
        hub.settings.sharing_rows_per_file,
    )
    key = catalog.current_schema(db=db, dataset=table.dataset).primaryKey

    def build() -> Materialized:
        current = view.arrow().read_all()
        previous = before.arrow().read_all() if before is not None else current.slice(0, 0)
        _release(db)
        changes = compute_changes(
            served_table(previous), served_table(current), primary_key=list(key)
        )
        return materialize(
            changes.to_batches(),
            changes.schema,
            fingerprint=fingerprint,
            rows_per_file=hub.settings.sharing_rows_per_file,
        )

    return CACHE.get_or_build(fingerprint, build)


def table_schema(
    *, db: Session, hub: Hub, recipient: Recipient, table: SharedTable, version: int
) -> pa.Schema:
    """The served (Spark-compatible) schema of a version, without reading its rows."""
    view = _view(db, hub, recipient, table, version)
    fingerprint = _fingerprint(
        "snapshot", table.dataset.id, version, view.explain(), hub.settings.sharing_rows_per_file
    )
    cached = CACHE.get(fingerprint)
    if cached is not None:
        return cached.schema

    def no_rows(columns: list[str]) -> pa.Table:
        return pa.schema([view.schema.field(name) for name in columns]).empty_table()

    # The same view over an empty source: DuckDB types the treated columns without any data.
    reader = dataclasses.replace(view, reader=no_rows).arrow()
    try:
        return spark_compatible(reader.schema)
    finally:
        reader.close()


# ---------------------------------------------------------------------------- responses


def metadata(
    *,
    db: Session,
    hub: Hub,
    recipient: Recipient,
    table: SharedTable,
    version: int,
    time_travel: bool,
    schema: pa.Schema | None = None,
) -> dict[str, Any]:
    served = schema or table_schema(
        db=db, hub=hub, recipient=recipient, table=table, version=version
    )
    comments = _field_comments(db, table)
    configuration = {"enableChangeDataFeed": "true"} if table.history else {}
    return metadata_line(
        table_id=table.table_id,
        name=table.name,
        description=table.dataset.title,
        schema_string=spark_schema_string(served, comments=comments),
        configuration=configuration,
        version=version if time_travel else None,
    )


def _field_comments(db: Session, table: SharedTable) -> dict[str, str]:
    schema = catalog.current_schema(db=db, dataset=table.dataset)
    return {
        field.name: field.description or field.title or ""
        for field in schema.fields
        if field.description or field.title
    }


class QueryRequest(BaseModel):
    """The body of ``POST .../query`` (unknown fields are ignored, as the protocol evolves)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    predicate_hints: list[str] | None = Field(default=None, alias="predicateHints")
    json_predicate_hints: str | None = Field(default=None, alias="jsonPredicateHints")
    limit_hint: int | None = Field(default=None, alias="limitHint", ge=0)
    version: int | None = None
    timestamp: str | None = None
    starting_version: int | None = Field(default=None, alias="startingVersion")
    ending_version: int | None = Field(default=None, alias="endingVersion")


def query_table(
    *,
    db: Session,
    hub: Hub,
    recipient: Recipient,
    table: SharedTable,
    request: QueryRequest,
    base_url: str,
) -> tuple[int, list[dict[str, Any]]]:
    """The protocol, metadata and file lines of a snapshot (latest or time travel)."""
    if request.starting_version is not None or request.ending_version is not None:
        raise BadRequest(
            "startingVersion queries (streaming) are not supported; use the changes endpoint",
            code=UNSUPPORTED_OPERATION,
        )
    version = resolve_version(
        db=db, table=table, version=request.version, timestamp=request.timestamp
    )
    time_travel = request.version is not None or request.timestamp is not None
    content = snapshot_content(db=db, hub=hub, recipient=recipient, table=table, version=version)
    chosen = _within_limit(_matching(content, request), content, request.limit_hint)
    parts = [content.parts[index] for index in chosen]
    commit_ms = _commit_ms(db, table, version) if time_travel else None
    files = [
        _served(
            hub,
            recipient,
            table,
            version,
            content,
            index,
            base_url,
            kind="snapshot",
            commit_ms=commit_ms,
        )
        for index in chosen
    ]
    lines = [
        protocol_line(),
        metadata(
            db=db,
            hub=hub,
            recipient=recipient,
            table=table,
            version=version,
            time_travel=time_travel,
            schema=content.schema,
        ),
        *(file_line(served) for served in files),
    ]
    if table.agreement_id is not None:
        # A query counts against the agreement's daily limits like one through the hub's API.
        usage = load_agreement(db, table.agreement_id)
        if usage.limited:  # only agreements with daily limits keep a day's count
            policy.record_usage(db=db, agreement=usage, rows=sum(part.rows for part in parts))
    _audit(
        db,
        recipient,
        table,
        "sharing.query",
        version=version,
        rows=sum(part.rows for part in parts),
        details={
            "files": len(files),
            "skipped": len(content.parts) - len(files),
            "bytes": sum(part.size for part in parts),
        },
    )
    return version, lines


def _matching(content: Materialized, request: QueryRequest) -> list[int]:
    """The files that may hold rows the predicate hints ask for (all, without usable hints)."""
    keep = skipping.file_filter(request.json_predicate_hints, request.predicate_hints)
    if keep is None:
        return list(range(len(content.parts)))
    return [index for index, part in enumerate(content.parts) if keep(json.loads(part.stats))]


def _within_limit(chosen: list[int], content: Materialized, limit: int | None) -> list[int]:
    """Best effort for ``limitHint``: just enough files to hold that many rows."""
    if limit is None:
        return chosen
    kept: list[int] = []
    rows = 0
    for index in chosen:
        if rows >= limit:
            break
        kept.append(index)
        rows += content.parts[index].rows
    return kept


def table_changes(
    *,
    db: Session,
    hub: Hub,
    recipient: Recipient,
    table: SharedTable,
    starting_version: int | None,
    ending_version: int | None,
    starting_timestamp: str | None,
    ending_timestamp: str | None,
    base_url: str,
) -> tuple[int, list[dict[str, Any]]]:
    """Change data feed lines (``cdf`` files with ``_change_type``) for a range of versions."""
    if not table.history:
        raise Forbidden(
            "this agreement does not share the table's history (change data feed)",
            code="history_not_shared",
        )
    start, end = _change_range(
        db, table, starting_version, ending_version, starting_timestamp, ending_timestamp
    )
    lines: list[dict[str, Any]] = []
    rows = 0
    schema: pa.Schema | None = None
    for version in range(start, end + 1):
        content = change_content(db=db, hub=hub, recipient=recipient, table=table, version=version)
        schema = content.schema
        commit_ms = _commit_ms(db, table, version)
        for index in range(len(content.parts)):
            served = _served(
                hub, recipient, table, version, content, index, base_url, "cdf", commit_ms
            )
            lines.append(change_line("cdf", served))
        rows += content.rows
    data_schema = _without_change_type(schema) if schema is not None else None
    head = [
        protocol_line(),
        metadata(
            db=db,
            hub=hub,
            recipient=recipient,
            table=table,
            version=end,
            time_travel=False,
            schema=data_schema,
        ),
    ]
    _audit(
        db,
        recipient,
        table,
        "sharing.changes",
        version=end,
        rows=rows,
        details={"starting_version": start, "ending_version": end, "files": len(lines)},
    )
    return start, head + lines


def _without_change_type(schema: pa.Schema) -> pa.Schema:
    return schema.remove(schema.get_field_index(CHANGE_TYPE))


def _change_range(
    db: Session,
    table: SharedTable,
    starting_version: int | None,
    ending_version: int | None,
    starting_timestamp: str | None,
    ending_timestamp: str | None,
) -> tuple[int, int]:
    if (starting_version is None) == (starting_timestamp is None):
        raise Invalid(
            "give exactly one of startingVersion and startingTimestamp", code="bad_version"
        )
    if ending_version is not None and ending_timestamp is not None:
        raise Invalid("give endingVersion or endingTimestamp, not both", code="bad_version")
    latest = latest_version(db=db, table=table)
    if starting_version is not None:
        if starting_version < 0:
            raise Invalid("startingVersion must be non-negative", code="bad_version")
        # Delta tables start at version 0, the hub's at 1: 0 means "from the beginning".
        start = max(starting_version, 1)
    else:
        assert starting_timestamp is not None
        moment = parse_timestamp(starting_timestamp, parameter="startingTimestamp")
        start = version_at_or_after(db=db, table=table, moment=moment)
    end = latest
    if ending_version is not None:
        end = ending_version
    elif ending_timestamp is not None:
        moment = parse_timestamp(ending_timestamp, parameter="endingTimestamp")
        try:
            end = storage.get_version(db=db, dataset=table.dataset, as_of=moment).number
        except NotFound as exc:
            raise Invalid(exc.message, code="bad_timestamp") from exc
    if end > latest:
        raise Invalid(
            f"endingVersion {end} is after the table's latest version {latest}",
            code="bad_version",
        )
    if start > end:
        raise Invalid(
            f"the starting version {start} is after the ending version {end}", code="bad_version"
        )
    return start, end


# ---------------------------------------------------------------------------- files


def _served(
    hub: Hub,
    recipient: Recipient,
    table: SharedTable,
    version: int,
    content: Materialized,
    index: int,
    base_url: str,
    kind: str,
    commit_ms: int | None,
) -> ServedFile:
    part = content.parts[index]
    expires = int(time.time()) + URL_LIFETIME_SECONDS
    grant = FileGrant(
        profile=recipient.profile_id,
        agreement=table.agreement_id,
        dataset=table.dataset.id,
        version=version,
        kind="cdf" if kind == "cdf" else "snapshot",
        part=index,
        fingerprint=content.fingerprint,
        size=part.size,
        expires=expires,
    )
    payload, _, signature = sign_grant(hub.keys.derive(FILE_URL_LABEL), grant).partition(".")
    return ServedFile(
        # The signature goes in the query string, which access logs leave out.
        url=f"{base_url}/files/{payload}?signature={signature}",
        id=hashlib.sha256(f"{content.fingerprint}:{index}".encode()).hexdigest()[:32],
        size=part.size,
        expiration_ms=expires * 1000,
        stats=part.stats,
        version=version if commit_ms is not None else None,
        timestamp_ms=commit_ms,
    )


@dataclass(frozen=True)
class OpenedFile:
    part: ParquetPart
    grant: FileGrant


_AUDITED_URLS: dict[str, None] = {}
_AUDITED_LIMIT = 100_000
_AUDITED_LOCK = threading.Lock()


def open_file(*, db: Session, hub: Hub, token: str) -> OpenedFile:
    """The file a signed URL names, after checking the recipient still has access to it.

    Revoking the agreement or the profile, or withdrawing the dataset from the share, stops the
    URL at once; its content comes from the cache the query filled (built again if evicted).
    A refusal is recorded here, once, as a denied ``sharing.file``; the caller commits it.
    """
    try:
        grant = verify_grant(hub.keys.derive(FILE_URL_LABEL), token, now=time.time())
        profile = profiles.get_profile(db=db, public_id=grant.profile)
    except CivicshareError as exc:
        audit_file_denied(db, reason=exc.code)
        raise
    # Records its own refusal, with the profile and why (revoked, expired, the agreement's state).
    recipient = profiles.live_recipient(db=db, profile=profile, denied_action="sharing.file")
    try:
        return _opened(db, hub, recipient, grant, token)
    except CivicshareError as exc:
        audit_file_denied(db, reason=exc.code)
        raise


def _opened(
    db: Session, hub: Hub, recipient: Recipient, grant: FileGrant, token: str
) -> OpenedFile:
    table = _table_of_grant(db, recipient, grant)
    content = CACHE.get(grant.fingerprint)
    if content is None:
        build = change_content if grant.kind == "cdf" else snapshot_content
        content = build(db=db, hub=hub, recipient=recipient, table=table, version=grant.version)
    if content.fingerprint != grant.fingerprint or grant.part >= len(content.parts):
        raise Forbidden(
            "what this URL named is no longer shared in that form; query the table again",
            code="content_changed",
        )
    part = content.parts[grant.part]
    if part.size != grant.size:
        raise Forbidden("the file changed; query the table again", code="content_changed")
    if _first_use(token.rpartition(".")[2]):
        _audit(
            db,
            recipient,
            table,
            "sharing.file",
            version=grant.version,
            rows=part.rows,
            details={"kind": grant.kind, "part": grant.part, "bytes": part.size},
        )
    return OpenedFile(part=part, grant=grant)


def _first_use(signature: str) -> bool:
    """Whether this process serves the URL for the first time (one audit record per URL: a
    download is many range requests of one file)."""
    with _AUDITED_LOCK:
        if signature in _AUDITED_URLS:
            return False
        if len(_AUDITED_URLS) >= _AUDITED_LIMIT:
            _AUDITED_URLS.pop(next(iter(_AUDITED_URLS)))
        _AUDITED_URLS[signature] = None
        return True


def _table_of_grant(db: Session, recipient: Recipient, grant: FileGrant) -> SharedTable:
    """The shared table a grant names, if it is still in the recipient's share."""
    if grant.agreement != recipient.agreement and grant.agreement is not None:
        raise Forbidden("this URL was issued for another share", code="not_shared")
    dataset = db.get(Dataset, grant.dataset)
    if dataset is None or dataset.purged_at is not None:
        raise Forbidden("this table is no longer shared with you", code="not_shared")
    if grant.agreement is None:
        if not catalog.can_discover(None, dataset):
            raise Forbidden("this table is no longer open data", code="not_shared")
        return SharedTable(profiles.OPEN_DATA_SHARE, dataset, None, None, history=True)
    agreement = load_agreement(db, grant.agreement)
    if all(g.dataset_id != dataset.id for g in agreement.grants):
        raise Forbidden("this table is no longer shared with you", code="not_shared")
    return SharedTable(
        agreement.public_id.lower(),
        dataset,
        agreement.public_id,
        agreement.purpose,
        recipient.history,
    )


# ---------------------------------------------------------------------------- audit


def _audit(
    db: Session,
    recipient: Recipient,
    table: SharedTable,
    action: str,
    *,
    version: int | None = None,
    rows: int | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    audit.record(
        db,
        actor=recipient.actor,
        action=action,
        agency=table.dataset.agency.slug,
        resource=table.dataset.ref,
        version=version,
        agreement=table.agreement_id,
        purpose=table.purpose,
        rows=rows,
        details={"share": table.share, **(details or {})},
    )


def audit_metadata_call(
    db: Session,
    recipient: Recipient,
    action: str,
    *,
    share: str,
    table: SharedTable | None = None,
) -> None:
    """Listing calls are audited too: who looked at which share (and which table)."""
    if table is not None:
        _audit(db, recipient, table, action)
        return
    audit.record(
        db,
        actor=recipient.actor,
        action=action,
        agreement=recipient.agreement,
        details={"share": share},
    )


def audit_read_denied(
    hub: Hub,
    recipient: Recipient,
    action: str,
    *,
    share: str,
    schema: str,
    table: str,
    error: CivicshareError,
) -> None:
    """A refused query or change feed, in a transaction of its own (the call's rolled back).

    The table is named as asked (``agency.dataset``, so its provider's stewards see the
    attempt) only when it has that shape: the path is the caller's text, not a known name.
    """
    ref = f"{schema}.{table}".lower()
    # The agreement (and its purpose) applies to its own share, not to the open-data one.
    agreement = recipient.agreement if share.lower() == recipient.share else None
    with hub.db.session() as db:
        purpose = (
            db.scalar(select(Agreement.purpose).where(Agreement.public_id == agreement))
            if agreement
            else None
        )
        audit.record(
            db,
            actor=recipient.actor,
            action=action,
            outcome="denied",
            reason=error.code,
            resource=ref if _REF.fullmatch(ref) else None,
            agreement=agreement,
            purpose=purpose,
            details={"share": share.lower()[:100], "status": error.status},
        )


_REF = re.compile(r"[a-z][a-z0-9_]{0,62}\.[a-z][a-z0-9_]{0,62}")


def audit_file_denied(db: Session, *, reason: str) -> None:
    """A refused file request (expired, altered, revoked…), recorded without the URL."""
    audit.record(db, actor=None, action="sharing.file", outcome="denied", reason=reason)
