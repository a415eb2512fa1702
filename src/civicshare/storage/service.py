"""Versioned, encrypted dataset storage: write and read versions, keys, purge and gc.

Key hierarchy: the master key (``hub.keys``, a ``KeyProvider``) wraps one key-encryption key per
agency, which wraps one data key per dataset, which seals the chunks of that dataset's segments.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, cast

import pyarrow as pa
from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.orm import Session

from civicshare import crypto
from civicshare.agency.models import Agency
from civicshare.audit import service as audit
from civicshare.catalog import service as catalog
from civicshare.catalog.models import Dataset
from civicshare.db import flush_or_conflict, utc_for_comparison, utcnow
from civicshare.errors import Conflict, Gone, Invalid, NotFound
from civicshare.ingest.models import IngestRecord
from civicshare.permissions import Action, Actor, authorize
from civicshare.storage.models import (
    AgencyKey,
    DataKey,
    DatasetVersion,
    GcReport,
    KeyRotation,
    StorageSegment,
)
from civicshare.storage.segments import (
    StoredFile,
    discard_segments,
    read_segments,
    write_segments,
)

if TYPE_CHECKING:
    from civicshare.catalog.tableschema import TableSchema
    from civicshare.hub import Hub

OPERATIONS = frozenset({"append", "replace", "upsert", "delete"})
MAX_VERSION_NUMBER = 2**31 - 1  # dataset_version.number is a 32-bit INTEGER on PostgreSQL
# Files younger than this may belong to a write whose version has not committed yet.
GC_MIN_AGE = dt.timedelta(hours=1)

# ---------------------------------------------------------------------------- versions


def write_version(
    *,
    db: Session,
    hub: Hub,
    actor: Actor,
    dataset: Dataset,
    batches: Iterable[pa.RecordBatch],
    schema: pa.Schema,
    keep_previous: bool,
    operation: str,
    details: dict[str, Any] | None = None,
    based_on: int | None = None,
) -> DatasetVersion:
    """Write the batches as new encrypted segments, then add one version in the caller transaction.

    ``based_on`` is the version the batches were computed from (0: none), for writers that
    rewrite the stored rows (upsert, delete): if another version was added since, the write is
    refused (``version_conflict``) rather than silently dropping that version's rows.

    The segments are written before the version row exists: if anything fails before the commit,
    they are unreferenced orphans that ``collect_garbage`` removes, and readers never see them.
    """
    authorize(actor, Action.storage_write, agency_id=dataset.agency_id)
    _require_live(dataset)
    if operation not in OPERATIONS:
        raise Invalid(
            f"unknown operation '{operation}'; expected one of {sorted(OPERATIONS)}",
            code="bad_operation",
        )
    table_schema = catalog.current_schema(db=db, dataset=dataset)
    stored = table_schema.arrow_schema()
    _check_schema(schema, stored)
    if keep_previous and (latest := _latest(db, dataset)) is not None:
        _check_appendable(db, dataset, latest, table_schema)  # early, before a long write
    key = _data_key(db, hub, actor, dataset, create=True)
    written = write_segments(
        hub.storage, dataset_id=dataset.id, key=key, batches=batches, schema=stored
    )
    try:
        previous = _lock_latest(db, dataset)
        if based_on is not None and (previous.number if previous else 0) != based_on:
            raise Conflict(
                f"'{dataset.ref}' got a new version while this write ran; run it again",
                code="version_conflict",
            )
        if keep_previous and previous is not None:
            _check_appendable(db, dataset, previous, table_schema)
        segment_ids = list(previous.segment_ids) if keep_previous and previous else []
        rows = previous.row_count if keep_previous and previous else 0
        for segment in written:
            db.add(
                StorageSegment(
                    id=segment.id,
                    dataset_id=dataset.id,
                    path=segment.path,
                    row_count=segment.row_count,
                    size_bytes=segment.size_bytes,
                    chunk_size=segment.chunk_size,
                )
            )
            segment_ids.append(segment.id)
            rows += segment.row_count
        version = DatasetVersion(
            dataset_id=dataset.id,
            number=(previous.number if previous else 0) + 1,
            row_count=rows,
            schema_hash=table_schema.schema_hash(),
            operation=operation,
            segment_ids=segment_ids,
            created_by=actor.email,
            created_at=_commit_time(),
            details=details,
        )
        db.add(version)
        flush_or_conflict(
            db, f"another write to '{dataset.ref}' committed first; retry", code="concurrent_write"
        )
    except BaseException:
        # Refused after its segments were stored (a purge, another version or a concurrent
        # write came first): no version will ever reference them, so they go now, not at gc.
        discard_segments(hub.storage, written)
        raise
    written_rows = sum(segment.row_count for segment in written)
    audit.record(
        db,
        actor=actor,
        action="dataset.version",
        agency=dataset.agency.slug,
        resource=dataset.ref,
        version=version.number,
        rows=written_rows,
        details={
            "operation": operation,
            "total_rows": rows,
            "segments_written": len(written),
            "schema_hash": version.schema_hash,
            **(details or {}),
        },
    )
    return version


def _commit_time() -> dt.datetime:
    """Now, in whole milliseconds: the precision Delta Sharing reports a version's commit time
    in. With microseconds kept, time travel to the reported time of a version found the version
    before it (its commit time rounded down came before the stored one)."""
    now = utcnow()
    return now.replace(microsecond=now.microsecond - now.microsecond % 1000)


def read_version(
    *,
    db: Session,
    hub: Hub,
    dataset: Dataset,
    version: int | None = None,
    as_of: dt.datetime | None = None,
    columns: list[str] | None = None,
) -> pa.RecordBatchReader:
    """The rows of a version (default: latest), decrypted in memory as they are read."""
    _require_live(dataset)
    chosen = get_version(db=db, dataset=dataset, version=version, as_of=as_of)
    schema = catalog.schema_by_hash(db=db, dataset=dataset, schema_hash=chosen.schema_hash)
    return read_chosen_version(
        db=db,
        hub=hub,
        dataset=dataset,
        chosen=chosen,
        schema=schema.arrow_schema(),
        columns=columns,
    )


def read_chosen_version(
    *,
    db: Session,
    hub: Hub,
    dataset: Dataset,
    chosen: DatasetVersion,
    schema: pa.Schema,
    columns: list[str] | None = None,
) -> pa.RecordBatchReader:
    """``read_version`` for a caller that already looked up the version and its Arrow schema
    (the query engine's policy views), sparing the same lookups a second time."""
    _require_live(dataset)
    target = schema
    if columns is not None:
        unknown = [name for name in columns if name not in target.names]
        if unknown:
            raise Invalid(
                f"unknown columns: {', '.join(unknown)}",
                code="unknown_column",
                details={"columns": unknown},
            )
        target = pa.schema([target.field(name) for name in columns])
    rows = db.execute(
        select(StorageSegment.id, StorageSegment.path).where(
            StorageSegment.id.in_(chosen.segment_ids)
        )
    )
    paths: dict[str, str] = {row[0]: row[1] for row in rows.all()}
    unknown_segments = [s for s in chosen.segment_ids if s not in paths]
    if unknown_segments:  # the metadata was damaged: a clear error, not a KeyError
        raise NotFound(
            f"version {chosen.number} of '{dataset.ref}' names segments the hub does not know",
            code="segment_missing",
            details={"segments": unknown_segments},
        )
    segments = [(segment_id, paths[segment_id]) for segment_id in chosen.segment_ids]
    key = _data_key(db, hub, None, dataset, create=False) if segments else b""
    return pa.RecordBatchReader.from_batches(
        target, read_segments(hub.storage, segments, key, target)
    )


def get_version(
    *,
    db: Session,
    dataset: Dataset,
    version: int | None = None,
    as_of: dt.datetime | None = None,
) -> DatasetVersion:
    """A version by number, the latest one at a moment (``as_of``), or the latest."""
    if version is not None and as_of is not None:
        raise Invalid("give a version number or a timestamp, not both", code="bad_version")
    query = select(DatasetVersion).where(DatasetVersion.dataset_id == dataset.id)
    if version is not None:
        query = query.where(DatasetVersion.number == version)
    if as_of is not None:
        if as_of.tzinfo is None:
            raise Invalid("as_of needs a time zone (e.g. 2026-01-01T00:00:00Z)", code="bad_version")
        query = query.where(DatasetVersion.created_at <= utc_for_comparison(as_of))
    # A number no version column can hold is no version (the databases refuse to compare it).
    numbered = version is None or 1 <= version <= MAX_VERSION_NUMBER
    found = db.scalar(query.order_by(DatasetVersion.number.desc()).limit(1)) if numbered else None
    if found is None:
        if version is not None:
            message = f"'{dataset.ref}' has no version {version}"
        elif as_of is not None:
            message = f"'{dataset.ref}' had no version at {as_of.isoformat()}"
        else:
            message = f"'{dataset.ref}' has no data yet"
        raise NotFound(message, code="version_not_found")
    return found


def list_versions(*, db: Session, dataset: Dataset) -> list[DatasetVersion]:
    return list(
        db.scalars(
            select(DatasetVersion)
            .where(DatasetVersion.dataset_id == dataset.id)
            .order_by(DatasetVersion.number)
        )
    )


def _lock_latest(db: Session, dataset: Dataset) -> DatasetVersion | None:
    # Serialise writers of one dataset (PostgreSQL row lock; SQLite already holds the write lock).
    purged = db.execute(
        select(Dataset.purged_at).where(Dataset.id == dataset.id).with_for_update()
    ).scalar_one()
    if purged is not None:  # a purge committed while this write was storing its segments
        raise Gone(f"'{dataset.ref}' was purged; its data is unrecoverable", code="dataset_purged")
    return _latest(db, dataset)


def _latest(db: Session, dataset: Dataset) -> DatasetVersion | None:
    return db.scalar(
        select(DatasetVersion)
        .where(DatasetVersion.dataset_id == dataset.id)
        .order_by(DatasetVersion.number.desc())
        .limit(1)
    )


def check_appendable(*, db: Session, dataset: Dataset) -> None:
    """Refuse now an append that the latest version's kept segments would make unreadable.

    For writers that read the stored rows before writing (an append's key check): they fail
    first with the reason, not on the stored values' cast. ``write_version`` checks again.
    """
    latest = _latest(db, dataset)
    if latest is not None:
        _check_appendable(db, dataset, latest, catalog.current_schema(db=db, dataset=dataset))


def _check_appendable(
    db: Session, dataset: Dataset, previous: DatasetVersion, schema: TableSchema
) -> None:
    """Refuse an append whose version could not read the segments it keeps.

    Kept segments are read in the new version's schema, each column cast from the type it was
    written with; after a (breaking) type change such as string to integer that cast fails on
    the old values, and every read of the new version would fail.
    """
    if previous.schema_hash == schema.schema_hash():
        return
    stored = schema.arrow_schema()
    before = catalog.schema_by_hash(
        db=db, dataset=dataset, schema_hash=previous.schema_hash
    ).arrow_schema()
    unreadable = [
        f"{field.name} ({before.field(field.name).type} to {field.type})"
        for field in stored
        if field.name in before.names
        and not _always_castable(before.field(field.name).type, field.type)
    ]
    if unreadable:
        raise Conflict(
            f"version {previous.number} of '{dataset.ref}' holds values the current schema "
            f"cannot read ({', '.join(unreadable)}); replace the data instead of appending",
            code="breaking_schema_change",
            details={"version": previous.number, "columns": unreadable},
        )


def _always_castable(source: pa.DataType, target: pa.DataType) -> bool:
    """Whether every value of ``source`` casts to ``target`` (a widening or text)."""
    if source.equals(target):
        return True
    if pa.types.is_string(target):
        return not pa.types.is_nested(source)
    if pa.types.is_integer(source):
        if pa.types.is_floating(target):
            return True
        return bool(pa.types.is_integer(target) and target.bit_width >= source.bit_width)
    return False


def _check_schema(given: pa.Schema, stored: pa.Schema) -> None:
    given_names, stored_names = set(given.names), set(stored.names)
    if given_names != stored_names:
        raise Invalid(
            "the batches' columns differ from the dataset's schema",
            code="schema_mismatch",
            details={
                "missing": sorted(stored_names - given_names),
                "unexpected": sorted(given_names - stored_names),
            },
        )
    wrong = {
        field.name: f"{given.field(field.name).type} (expected {field.type})"
        for field in stored
        if not given.field(field.name).type.equals(field.type)
    }
    if wrong:
        raise Invalid(
            "the batches' column types differ from the dataset's schema",
            code="schema_mismatch",
            details=wrong,
        )


def _require_live(dataset: Dataset) -> None:
    if dataset.purged_at is not None:
        raise Gone(f"'{dataset.ref}' was purged; its data is unrecoverable", code="dataset_purged")


# ---------------------------------------------------------------------------- keys


def _agency_key_context(agency_id: int, version: int) -> bytes:
    return f"agency-kek:{agency_id}:{version}".encode()


def _data_key_context(dataset_id: int) -> bytes:
    return f"data-key:{dataset_id}".encode()


def _active_agency_key(db: Session, agency_id: int) -> AgencyKey | None:
    return db.scalar(
        select(AgencyKey)
        .where(AgencyKey.agency_id == agency_id, AgencyKey.retired_at.is_(None))
        .order_by(AgencyKey.version.desc())
        .limit(1)
    )


def _create_agency_key(
    db: Session, hub: Hub, actor: Actor | None, agency: Agency, version: int
) -> tuple[AgencyKey, bytes]:
    secret = crypto.new_data_key()
    key = AgencyKey(
        agency_id=agency.id,
        version=version,
        wrapped=hub.keys.wrap(secret, context=_agency_key_context(agency.id, version)),
        provider_key_id=hub.keys.key_id,
    )
    db.add(key)
    db.flush()
    audit.record(
        db,
        actor=actor,
        action="key.create",
        agency=agency.slug,
        resource=f"agency-key:{agency.slug}:{version}",
        details={"kind": "agency_kek", "version": version},
    )
    return key, secret


def _unwrap_agency_key(hub: Hub, key: AgencyKey) -> bytes:
    if key.wrapped is None:
        raise Gone("the agency key was retired", code="key_destroyed")
    return hub.keys.unwrap(key.wrapped, context=_agency_key_context(key.agency_id, key.version))


def _data_key(
    db: Session, hub: Hub, actor: Actor | None, dataset: Dataset, *, create: bool
) -> bytes:
    """The dataset's data key in the clear (memory only), created on first write."""
    # One statement for both wrapped keys: on PostgreSQL (read committed) a rotation committing
    # between two lookups retired the key-encryption key the data key row still pointed at.
    # Plain columns, not entities, so no stale copy from the session's identity map is used.
    row = db.execute(
        select(DataKey.wrapped, AgencyKey.agency_id, AgencyKey.version, AgencyKey.wrapped)
        .join(AgencyKey, AgencyKey.id == DataKey.agency_key_id)
        .where(DataKey.dataset_id == dataset.id)
    ).one_or_none()
    if row is not None:
        wrapped, agency_id, version, wrapped_kek = row
        if wrapped is None:
            raise Gone(f"the data key of '{dataset.ref}' was destroyed", code="key_destroyed")
        if wrapped_kek is None:
            raise Gone("the agency key was retired", code="key_destroyed")
        kek = hub.keys.unwrap(wrapped_kek, context=_agency_key_context(agency_id, version))
        return crypto.aead_decrypt(kek, wrapped, context=_data_key_context(dataset.id))
    if not create:
        raise NotFound(f"'{dataset.ref}' has no data key", code="key_not_found")
    # Before choosing the key-encryption key: a rotation retiring it must not be in flight.
    audit.hold_appends(db)
    active = _active_agency_key(db, dataset.agency_id)
    if active is None:
        agency_key, kek = _create_agency_key(db, hub, actor, dataset.agency, 1)
    else:
        agency_key, kek = active, _unwrap_agency_key(hub, active)
    secret = crypto.new_data_key()
    db.add(
        DataKey(
            dataset_id=dataset.id,
            agency_key_id=agency_key.id,
            wrapped=crypto.aead_encrypt(kek, secret, context=_data_key_context(dataset.id)),
        )
    )
    flush_or_conflict(
        db,
        f"another write to '{dataset.ref}' created its key first; retry",
        code="concurrent_write",
    )
    audit.record(
        db,
        actor=actor,
        action="key.create",
        agency=dataset.agency.slug,
        resource=dataset.ref,
        details={"kind": "data_key", "agency_key_version": agency_key.version},
    )
    return secret


def seal_under_dataset_key(
    *, db: Session, hub: Hub, actor: Actor | None, dataset: Dataset, secret: bytes, context: bytes
) -> bytes:
    """``secret`` (a key for something else kept about the dataset) wrapped by its data key.

    Whatever such a key protects — an ingest's quarantine of rejected values — is then shredded
    with the dataset: ``purge_dataset`` destroys the data key, and no wrapped copy (a backup of
    the metadata database included) can be opened again. The data key is created if the dataset
    has none yet (an ingest rejected before its first version).
    """
    _require_live(dataset)
    key = _data_key(db, hub, actor, dataset, create=True)
    return crypto.aead_encrypt(key, secret, context=b"sealed-by-data-key:" + context)


def open_under_dataset_key(
    *, db: Session, hub: Hub, dataset: Dataset, wrapped: bytes, context: bytes
) -> bytes:
    """The secret ``seal_under_dataset_key`` wrapped; ``Gone`` once the dataset was purged."""
    _require_live(dataset)
    key = _data_key(db, hub, None, dataset, create=False)
    return crypto.aead_decrypt(key, wrapped, context=b"sealed-by-data-key:" + context)


def rotate_agency_key(*, db: Session, hub: Hub, actor: Actor, agency: Agency) -> KeyRotation:
    """Give the agency a new key-encryption key and rewrap its data keys; no data is rewritten.

    The old key is retired and its wrapped form erased, so it cannot unwrap anything again.
    """
    authorize(actor, Action.key_rotate, agency_id=agency.id)
    # Serialised with the creation of data keys (see ``audit.hold_appends``): a data key wrapped
    # under ``old`` by a concurrent write would be neither rewrapped here nor readable after.
    audit.hold_appends(db)
    old = _active_agency_key(db, agency.id)
    latest = db.scalar(select(func.max(AgencyKey.version)).where(AgencyKey.agency_id == agency.id))
    new, new_secret = _create_agency_key(db, hub, actor, agency, (latest or 0) + 1)
    rewrapped = 0
    if old is not None:
        old_secret = _unwrap_agency_key(hub, old)
        rows = db.scalars(
            select(DataKey).where(DataKey.agency_key_id == old.id, DataKey.wrapped.is_not(None))
        )
        for row in rows:
            assert row.wrapped is not None
            context = _data_key_context(row.dataset_id)
            secret = crypto.aead_decrypt(old_secret, row.wrapped, context=context)
            row.wrapped = crypto.aead_encrypt(new_secret, secret, context=context)
            row.agency_key_id = new.id
            row.rewrapped_at = utcnow()
            rewrapped += 1
        old.wrapped = None
        old.retired_at = utcnow()
    # Data keys already destroyed keep pointing at the retired key: nothing to rewrap there.
    db.flush()
    audit.record(
        db,
        actor=actor,
        action="key.rotate",
        agency=agency.slug,
        resource=f"agency-key:{agency.slug}:{new.version}",
        details={
            "version": new.version,
            "retired_version": old.version if old else None,
            "rewrapped_data_keys": rewrapped,
        },
    )
    return KeyRotation(
        agency=agency.slug,
        version=new.version,
        rewrapped_data_keys=rewrapped,
        retired_version=old.version if old else None,
    )


# ---------------------------------------------------------------------------- purge and gc


def purge_dataset(*, db: Session, actor: Actor, dataset: Dataset) -> Dataset:
    """Crypto-shred a dataset: destroy its data key so every segment is unreadable for good.

    The catalog entry and its versions stay (marked purged) as the record of what existed.
    """
    authorize(actor, Action.dataset_purge, agency_id=dataset.agency_id)
    _require_live(dataset)
    # Before touching the data key: a key rotation takes the append lock first and then the
    # data keys, so taking them the other way round could deadlock the two (PostgreSQL).
    audit.hold_appends(db)
    now = utcnow()
    row = db.scalar(select(DataKey).where(DataKey.dataset_id == dataset.id))
    if row is not None:
        row.wrapped = None
        row.destroyed_at = now
        audit.record(
            db,
            actor=actor,
            action="key.destroy",
            agency=dataset.agency.slug,
            resource=dataset.ref,
            details={"kind": "data_key"},
        )
    # Ingest quarantines are sealed under keys the data key wraps, so they are shredded with it;
    # erasing the sealed blobs as well leaves no ciphertext of rejected values behind either.
    erased = cast(
        "CursorResult[Any]",
        db.execute(
            update(IngestRecord)
            .where(IngestRecord.dataset_id == dataset.id, IngestRecord.quarantine.is_not(None))
            .values(quarantine=None, quarantine_key=None)
            .execution_options(synchronize_session="fetch"),
        ),
    )
    quarantines = erased.rowcount
    dataset.purged_at = now
    dataset.updated_at = now
    db.flush()
    versions = list_versions(db=db, dataset=dataset)
    audit.record(
        db,
        actor=actor,
        action="dataset.purge",
        agency=dataset.agency.slug,
        resource=dataset.ref,
        details={
            "versions": len(versions),
            "had_data_key": row is not None,
            "quarantines_erased": quarantines,
        },
    )
    return dataset


def collect_garbage(
    *,
    db: Session,
    hub: Hub,
    actor: Actor,
    apply: bool = False,
    min_age: dt.timedelta = GC_MIN_AGE,
) -> GcReport:
    """Find (and with ``apply``, delete) segment files no live version references.

    Orphans are files of writes that never committed; shredded files belong to purged datasets
    and can no longer be decrypted. Files younger than ``min_age`` are left alone, since their
    version may be about to commit.
    """
    authorize(actor, Action.storage_gc)
    live = set(
        db.scalars(
            select(StorageSegment.path)
            .join(Dataset, Dataset.id == StorageSegment.dataset_id)
            .where(Dataset.purged_at.is_(None))
        )
    )
    known = set(db.scalars(select(StorageSegment.path)))
    cutoff = utcnow() - min_age
    files = hub.storage.list_files("datasets")
    writing = _folders_being_written(files, known, cutoff)
    orphans: list[StoredFile] = []
    shredded: list[StoredFile] = []
    for stored in files:
        if stored.path in live or _young(stored, cutoff):
            continue
        if stored.path in known:
            shredded.append(stored)
        elif _folder(stored) not in writing:
            orphans.append(stored)
    if apply:
        for stored in orphans + shredded:
            # Gone already: another gc (a second replica's) deleted it since the listing. That
            # must not stop this run halfway, before its deletions are audited.
            with contextlib.suppress(FileNotFoundError):
                hub.storage.delete(stored.path)
        audit.record(
            db,
            actor=actor,
            action="storage.gc",
            details={
                "orphans": len(orphans),
                "shredded": len(shredded),
                "bytes": sum(f.size for f in orphans + shredded),
            },
        )
    return GcReport(
        applied=apply,
        orphans=[f.path for f in orphans],
        orphan_bytes=sum(f.size for f in orphans),
        shredded=[f.path for f in shredded],
        shredded_bytes=sum(f.size for f in shredded),
        referenced=len(live),
    )


def _young(stored: StoredFile, cutoff: dt.datetime) -> bool:
    return stored.modified is not None and stored.modified > cutoff


def _folder(stored: StoredFile) -> str:
    return stored.path.rpartition("/")[0]


def _folders_being_written(
    files: list[StoredFile], known: set[str], cutoff: dt.datetime
) -> set[str]:
    """Dataset folders with a recent unreferenced file: a write may be in flight there.

    A long write (an ingest of many segments) finishes its first segments long before its
    version commits; judged alone by their age they would be deleted under it.
    """
    return {_folder(f) for f in files if f.path not in known and _young(f, cutoff)}
