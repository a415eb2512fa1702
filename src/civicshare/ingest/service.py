"""Ingest a file into a dataset: read, validate, standardise, store one new version, report.

The file streams through in batches: read as text (``readers``), checked and converted
(``validate``), and handed to ``storage.write_version`` as it goes, so memory stays flat for
appends and replaces. Upserts and deletes need the whole set of incoming keys before the stored
rows can be filtered: they keep the incoming key columns in memory (and, for an upsert, the
columns that must stay unique across the version), while an upsert's incoming rows wait in a
sealed spill file until the stored version has streamed through.
Nothing becomes visible unless the whole ingest succeeds: segments are written first, and the
version row is added in the caller's transaction.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import queue
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import select
from sqlalchemy.orm import Session

from civicshare import crypto
from civicshare.audit import service as audit
from civicshare.catalog import service as catalog
from civicshare.catalog.models import Dataset
from civicshare.catalog.tableschema import TableSchema
from civicshare.db import utcnow
from civicshare.errors import Gone, Invalid, NotFound
from civicshare.ingest.keyset import KeySet
from civicshare.ingest.models import (
    MODES,
    IngestDetail,
    IngestMode,
    IngestRecord,
    IngestReport,
    IngestStatus,
    QuarantinedRow,
)
from civicshare.ingest.readers import Format, Source, TableSource, open_table
from civicshare.ingest.validate import RULES, Rejection, Validator
from civicshare.permissions import Action, Actor, authorize, is_allowed
from civicshare.storage import service as storage
from civicshare.storage.segments import SealedSpool, conform_batch

if TYPE_CHECKING:
    from civicshare.hub import Hub

Progress = Callable[[int, int], None]
MASK = "***"
PROTECTED = frozenset({"personal", "sensitive"})
RELEASE_BYTES = 8 << 20  # of parsed batches (Arrow bytes) between returns of freed memory
# An upsert's incoming rows wait on disk compressed, then sealed: a fast codec, read back once.
SPILL = pa.ipc.IpcWriteOptions(compression="lz4")


class ErrorRateExceeded(Exception):
    """Raised inside the batch stream to abandon the write before any version exists."""


class KeptValuesFound(Exception):
    """Raised by an upsert whose rows hold values of stored rows it keeps: the pass is redone."""

    def __init__(self, values: dict[str, pa.Table]) -> None:
        super().__init__("values held by kept stored rows")
        self.values = values


class RepeatsFound(Exception):
    """Raised at the end of a first pass that found repeated keys: the pass is redone."""

    def __init__(self, repeats: dict[str, pa.Array]) -> None:
        super().__init__("repeated keys")
        self.repeats = repeats


@dataclass
class Tally:
    """Running counts over the batches of one ingest."""

    rows_read: int = 0
    rows_accepted: int = 0
    rows_rejected: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    rejections: list[Rejection] = field(default_factory=list)


def ingest_file(
    *,
    db: Session,
    hub: Hub,
    actor: Actor,
    dataset: Dataset,
    source: Path | BinaryIO,
    filename: str,
    mode: str = "append",
    key: list[str] | None = None,
    max_error_rate: float = 0.05,
    progress: Progress | None = None,
    format: Format | None = None,
    encoding: str | None = None,
) -> IngestReport:
    """Validate ``source`` against the dataset's schema and store one new version.

    When more than ``max_error_rate`` of the rows are rejected, nothing is stored and the
    report says ``rejected``; the ingest is recorded either way.
    """
    authorize(actor, Action.ingest_run, agency_id=dataset.agency_id)
    if dataset.purged_at is not None:
        raise Gone(f"'{dataset.ref}' was purged", code="dataset_purged")
    chosen = _mode(mode)
    if not 0 <= max_error_rate <= 1:
        raise Invalid("max_error_rate must be between 0 and 1", code="bad_error_rate")
    schema = catalog.current_schema(db=db, dataset=dataset)
    key_fields = _key(schema, chosen, key)
    started = utcnow()
    clock = time.perf_counter()
    repeats: dict[str, pa.Array] = {}
    kept_values: dict[str, pa.Table] = {}
    seeded: int | None = None  # the version whose keys an append checked its own against
    while True:
        # Usually one pass. Keys are checked for repeats once the pass is over; if there are
        # any, that write is abandoned (unreferenced segments) and a second pass rejects them.
        # An upsert whose rows hold a unique value of a stored row it keeps is redone the same
        # way once, rejecting them (which ones is settled in memory: ``_held_by_kept_rows``).
        table = open_table(source, filename=filename, format=format, encoding=encoding)
        only = key_fields if chosen == "delete" else None
        validator = Validator(
            schema,
            table.columns,
            only_fields=only,
            key=key_fields or (),
            check_unique=chosen != "delete",
            iso_columns=table.iso_columns,
            iso_cells=table.iso_cells,
        )
        _require_key_columns(validator, key_fields)
        validator.known_repeats = repeats
        validator.kept_values = kept_values
        tally = Tally()
        try:
            if chosen == "append":
                storage.check_appendable(db=db, dataset=dataset)
            if chosen == "append" and not repeats:
                seeded = _seed_stored_keys(db, hub, dataset, validator)
            batches = Ahead(
                _validated(table, validator, tally, max_error_rate, progress, not repeats)
            )
            try:
                version, extra = _store(
                    db, hub, actor, dataset, schema, chosen, key_fields, validator, batches, seeded
                )
            finally:
                batches.close()  # joins the reading thread before the validator closes
            status = IngestStatus.stored
        except ErrorRateExceeded:
            version, extra, status = None, {}, IngestStatus.rejected
        except RepeatsFound as found:
            repeats = found.repeats
            continue
        except KeptValuesFound as found:
            if kept_values:
                # The pass that rejected every row the check named found more: the check and
                # the validator disagree on equality. Stop rather than loop.
                raise RuntimeError("an upsert's uniqueness check did not settle") from None
            kept_values = found.values
            continue
        finally:
            validator.close()
        break
    extra["seconds"] = round(time.perf_counter() - clock, 3)
    record = _record(
        db,
        hub,
        actor,
        dataset,
        table,
        source,
        filename,
        chosen,
        key_fields,
        max_error_rate,
        status,
        version,
        tally,
        extra,
        started,
    )
    return IngestReport.of(record)


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


_DONE = object()


class Ahead(Iterator[pa.RecordBatch]):
    """Runs a batch iterator in a thread, at most ``depth`` batches ahead of the consumer.

    Reading and validating batch n+1 (Arrow kernels, which release the GIL) then overlaps with
    compressing and encrypting batch n, using both cores. Memory stays bounded by ``depth``. An
    exception of the producer (bad file, too many errors, repeats found) is raised to the
    consumer in its place; ``close`` stops the producer and waits for it, so nothing it uses
    (the validator's ledger, the source file) is closed under it.
    """

    def __init__(self, inner: Iterator[pa.RecordBatch], depth: int = 2) -> None:
        self._inner = inner
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._finished = False
        self._thread = threading.Thread(target=self._produce, name="ingest-reader", daemon=True)
        self._thread.start()

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        try:
            for batch in self._inner:
                if not self._put(batch):
                    return
            self._put(_DONE)
        except BaseException as error:  # handed to the consumer, which re-raises it
            self._put(_Failed(error))
        finally:
            close = getattr(self._inner, "close", None)
            if close is not None:
                close()

    def __next__(self) -> pa.RecordBatch:
        if self._finished:
            raise StopIteration
        item = self._queue.get()
        if item is _DONE:
            self._finished = True
            raise StopIteration
        if isinstance(item, _Failed):
            self._finished = True
            raise item.error
        assert isinstance(item, pa.RecordBatch)
        return item

    def close(self) -> None:
        self._finished = True
        self._stop.set()
        self._thread.join()


def _mode(mode: str) -> IngestMode:
    for known in MODES:
        if mode == known:
            return known
    raise Invalid(f"unknown mode '{mode}'; expected one of {list(MODES)}", code="bad_mode")


def _require_key_columns(validator: Validator, key: list[str] | None) -> None:
    """An upsert or delete by columns the file lacks would match nothing: refuse it up front."""
    missing = [name for name in key or [] if validator.sources.get(name) is None]
    if missing:
        validator.close()
        raise Invalid(
            f"the file lacks the key columns: {', '.join(missing)}",
            code="missing_columns",
            details={"columns": missing},
        )


def _key(schema: TableSchema, mode: IngestMode, key: list[str] | None) -> list[str] | None:
    """The key columns of an upsert or delete: as given, else the schema's primary key."""
    if mode not in ("upsert", "delete"):
        if key:
            raise Invalid("--key applies to upsert and delete only", code="bad_key")
        return None
    # A column named twice (--key id,id) is one key column; twice, Arrow could not select it.
    chosen = list(dict.fromkeys(key or schema.primaryKey))
    if not chosen:
        raise Invalid(
            f"{mode} needs key columns (--key) or a schema with a primaryKey",
            code="key_required",
        )
    unknown = [name for name in chosen if name not in schema.field_names]
    if unknown:
        raise Invalid(f"unknown key columns: {', '.join(unknown)}", code="bad_key", details=unknown)
    return chosen


def _validated(
    table: TableSource,
    validator: Validator,
    tally: Tally,
    max_error_rate: float,
    progress: Progress | None,
    find_repeats: bool,
) -> Iterator[pa.RecordBatch]:
    """The accepted rows, batch by batch; raises at the end on repeats or too many rejects."""
    unreleased = 0
    for batch in table:
        outcome = validator.validate(batch, tally.rows_read + 1)
        tally.rows_read += batch.num_rows
        tally.rows_rejected += outcome.rejected_rows
        tally.rows_accepted += outcome.accepted.num_rows
        tally.errors.update(outcome.errors_by_rule)
        tally.rejections.extend(outcome.rejections)
        if progress is not None:
            progress(tally.rows_read, table.bytes_read.value)
        # Validation frees dozens of temporary arrays per batch; handing the freed pages back to
        # the OS keeps RSS flat as the file grows instead of creeping with allocator
        # fragmentation (measured: +90 MB over the first 4M rows without it). Once per
        # RELEASE_BYTES of parsed batches, not per batch: each release costs page faults to take the
        # memory back, and with 4 MB CSV blocks releasing every batch cost ~4 % more CPU.
        unreleased += batch.nbytes
        if unreleased >= RELEASE_BYTES:
            pa.default_memory_pool().release_unused()
            unreleased = 0
        if outcome.accepted.num_rows:
            yield outcome.accepted
    if find_repeats:
        repeats = validator.repeats()
        if repeats:
            raise RepeatsFound(repeats)
    if tally.rows_read and tally.rows_rejected / tally.rows_read > max_error_rate:
        raise ErrorRateExceeded


def _seed_stored_keys(db: Session, hub: Hub, dataset: Dataset, validator: Validator) -> int | None:
    """Appends must not repeat a key or unique value already stored.

    Returns the version whose keys were read (0: none yet), which the append must then directly
    follow, or None when there is nothing to check.
    """
    names = list(dict.fromkeys(validator.primary_key + validator.unique_fields))
    if not names:
        return None
    versions = storage.list_versions(db=db, dataset=dataset)
    if not versions:
        return 0
    base = versions[-1].number
    wanted = _select(validator.target.remove_metadata(), names)
    for batch in _stored_batches(db, hub, dataset, base, wanted):
        validator.seed_existing(pa.Table.from_batches([batch]))
    return base


def _stored_batches(
    db: Session, hub: Hub, dataset: Dataset, base: int, schema: pa.Schema
) -> Iterator[pa.RecordBatch]:
    """Version ``base`` read in the current schema's columns and types (``schema``, which may
    name a subset of them).

    A version keeps the schema it was written under: a field added since comes back as nulls,
    one removed since is left out, and a changed type is cast, so stored keys compare with the
    file's in one type (an integer key 1 stored before a change to string repeats "1"). Read as
    stored, such a version could not be merged with the file's rows (a crash) nor asked for a
    field it lacks. A change the stored values cannot be cast to is refused before this, as
    ``breaking_schema_change`` (``storage.check_appendable``).
    """
    chosen = storage.get_version(db=db, dataset=dataset, version=base)
    written = catalog.schema_by_hash(db=db, dataset=dataset, schema_hash=chosen.schema_hash)
    present = [name for name in schema.names if name in written.field_names]
    # Some column must be read for the rows to be counted, even when all ``schema`` lacks it.
    columns = present or written.field_names[:1]
    for batch in storage.read_version(
        db=db, hub=hub, dataset=dataset, version=base, columns=columns
    ):
        yield conform_batch(batch, schema)


def _store(
    db: Session,
    hub: Hub,
    actor: Actor,
    dataset: Dataset,
    schema: TableSchema,
    mode: IngestMode,
    key: list[str] | None,
    validator: Validator,
    batches: Iterator[pa.RecordBatch],
    seeded: int | None,
) -> tuple[int, dict[str, Any]]:
    target = schema.arrow_schema()
    if mode in ("append", "replace"):
        version = storage.write_version(
            db=db,
            hub=hub,
            actor=actor,
            dataset=dataset,
            batches=batches,
            schema=target,
            keep_previous=mode == "append",
            operation=mode,
            # Keys another append adds meanwhile were not checked against this file's.
            based_on=seeded if mode == "append" else None,
        )
        return version.number, {}
    assert key is not None
    counts = {"rows_kept": 0, "rows_replaced_or_deleted": 0}
    constraints = _constraints_beside_key(validator, key) if mode == "upsert" else {}
    # Only an upsert has rows to put back after the stored ones; a delete's file is its keys.
    with SealedSpool() if mode == "upsert" else contextlib.nullcontext() as upserted:
        wanted = _columns(key, constraints)
        incoming = _keys_and_spill(batches, wanted, validator.target.remove_metadata(), upserted)
        # Compared in the stored types, which the incoming rows are cast to as well.
        incoming = incoming.cast(_select(target, wanted))
        keys = KeySet(incoming.select(key))
        # Every stored row is read from this version, and the new one must directly follow it:
        # a version another writer adds meanwhile would otherwise be silently overwritten.
        versions = storage.list_versions(db=db, dataset=dataset)
        base = versions[-1].number if versions else 0
        try:
            if constraints:
                held = _held_by_kept_rows(
                    db, hub, dataset, base, keys, incoming, constraints, target
                )
                if held:
                    raise KeptValuesFound(held)
            del incoming  # the key set holds its own copy
            version = storage.write_version(
                db=db,
                hub=hub,
                actor=actor,
                dataset=dataset,
                batches=_merged(db, hub, dataset, base, keys, target, upserted, counts),
                schema=target,
                keep_previous=False,
                operation=mode,
                based_on=base,
            )
        finally:
            keys.close()
    label = "rows_deleted" if mode == "delete" else "rows_replaced"
    return version.number, {
        "rows_kept": counts["rows_kept"],
        label: counts["rows_replaced_or_deleted"],
    }


Constraints = dict[str, list[str]]  # "primaryKey" / "unique:NAME" -> its columns


def _constraints_beside_key(validator: Validator, key: list[str]) -> Constraints:
    """What must stay unique across the new version, other than the upsert's key itself.

    A stored row the upsert replaces gives up its values; one it keeps holds on to them. A
    unique field that is the whole key cannot clash (its kept rows have other values).
    """
    constraints = {f"unique:{name}": [name] for name in validator.unique_fields if [name] != key}
    primary = validator.primary_key
    if primary and primary != key and len(primary) == len(validator.schema.primaryKey):
        constraints["primaryKey"] = primary
    return constraints


def _columns(key: list[str], constraints: Constraints) -> list[str]:
    return list(dict.fromkeys(key + [name for names in constraints.values() for name in names]))


def _select(schema: pa.Schema, names: list[str]) -> pa.Schema:
    return pa.schema([schema.field(name) for name in names])


def _held_by_kept_rows(
    db: Session,
    hub: Hub,
    dataset: Dataset,
    base: int,
    keys: KeySet,
    incoming: pa.Table,
    constraints: Constraints,
    target: pa.Schema,
) -> dict[str, pa.Table]:
    """Per constraint, the values that stored rows kept by the upsert hold and file rows repeat.

    Rejecting the file rows that repeat them keeps the stored rows of their keys, whose values
    may bind further file rows: followed here in memory to the end (the stored rows the file
    replaces are few, at most one per file row), so one more pass over the file rejects exactly
    the rows named.
    """
    if not base:
        return {}
    mine = {name: _ValueSet(incoming.select(columns)) for name, columns in constraints.items()}
    try:
        held, replaced = _stored_values(db, hub, dataset, base, keys, mine, target)
        rejected = np.zeros(incoming.num_rows, dtype=np.bool_)
        frontier = {name: list(tables) for name, tables in held.items()}
        while True:
            # Only the values found last round can reject rows not rejected yet.
            open_rows = np.flatnonzero(~rejected)
            newly = np.zeros(incoming.num_rows, dtype=np.bool_)
            newly[open_rows] = _holding(incoming.take(pa.array(open_rows)), frontier)
            if not newly.any():
                break
            rejected |= newly
            # Their keys no longer replace stored rows: those rows are kept, with their values.
            freed = KeySet(incoming.select(keys.columns).filter(pa.array(newly)))
            back = freed.contains(replaced.select(keys.columns))
            for name, value_set in mine.items():
                frontier[name] = [value_set.repeated_by(replaced.filter(pa.array(back)))]
                held[name].extend(frontier[name])
            replaced = replaced.filter(pa.array(~back))
    finally:
        for value_set in mine.values():
            value_set.close()
    return {
        name: pa.concat_tables(tables)
        for name, tables in held.items()
        if sum(table.num_rows for table in tables)
    }


def _stored_values(
    db: Session,
    hub: Hub,
    dataset: Dataset,
    base: int,
    keys: KeySet,
    mine: dict[str, _ValueSet],
    target: pa.Schema,
) -> tuple[dict[str, list[pa.Table]], pa.Table]:
    """One pass over the stored key and constraint columns (in the current schema's types).

    Returns, per constraint, the kept rows' values that the file repeats, and the stored rows
    (key and constraint columns) that the file replaces.
    """
    columns = _columns(keys.columns, {name: s.columns for name, s in mine.items()})
    types = _select(target, columns)
    held: dict[str, list[pa.Table]] = {name: [] for name in mine}
    replaced: list[pa.Table] = []
    for batch in _stored_batches(db, hub, dataset, base, types):
        stored = pa.Table.from_batches([batch])
        mask = keys.contains(stored.select(keys.columns))
        kept = stored.filter(pa.array(~mask))
        for name, value_set in mine.items():
            held[name].append(value_set.repeated_by(kept))
        replaced.append(stored.filter(pa.array(mask)))
    return held, pa.concat_tables(replaced) if replaced else types.empty_table()


def _holding(incoming: pa.Table, held: dict[str, list[pa.Table]]) -> npt.NDArray[np.bool_]:
    """Which file rows hold a value of some constraint among ``held``."""
    found = np.zeros(incoming.num_rows, dtype=np.bool_)
    for tables in held.values():
        values = [table for table in tables if table.num_rows]
        if not values:
            continue
        found |= KeySet(pa.concat_tables(values)).contains(incoming)
    return found


class _ValueSet:
    """The file's values of one constraint (rows with a null in it do not count)."""

    def __init__(self, values: pa.Table) -> None:
        self.columns = values.column_names
        self._set = KeySet(_complete(values))

    def repeated_by(self, stored: pa.Table) -> pa.Table:
        """The values of ``stored`` rows (complete ones) that the file repeats."""
        values = _complete(stored.select(self.columns))
        return values.filter(pa.array(self._set.contains(values)))

    def close(self) -> None:
        self._set.close()


def _complete(values: pa.Table) -> pa.Table:
    """The rows without a null: a null repeats freely under Table Schema's unique."""
    mask = pa.array(np.ones(values.num_rows, dtype=np.bool_))
    for column in values.columns:
        mask = pc.and_(mask, pc.is_valid(column))
    return values.filter(mask)


def _keys_and_spill(
    batches: Iterator[pa.RecordBatch],
    columns: list[str],
    schema: pa.Schema,
    spill: SealedSpool | None,
) -> pa.Table:
    """The incoming rows' ``columns`` (only they stay in memory); whole rows go to ``spill``.

    The batches are consumed to the end first, so a batch over the error-rate limit raises here,
    before anything is written.
    """
    kept: list[pa.RecordBatch] = []
    writer = None if spill is None else pa.ipc.new_stream(_spill_sink(spill), schema, options=SPILL)
    try:
        for batch in batches:
            kept.append(batch.select(columns))
            if writer is not None:
                writer.write_batch(batch)
    finally:
        if writer is not None:
            writer.close()  # ends the stream; the spool stays open for ``_replayed``
    return pa.Table.from_batches(kept, schema=_select(schema, columns))


def _spill_sink(spill: SealedSpool) -> pa.NativeFile:
    # Closing this wrapper must not close the spool, which is read back afterwards.
    return pa.PythonFile(_Unclosable(spill), mode="w")


def _replayed(spill: SealedSpool) -> Iterator[pa.RecordBatch]:
    """The spilled incoming rows, in the order they arrived."""
    spill.seek(0)
    yield from pa.ipc.open_stream(pa.PythonFile(_Unclosable(spill), mode="r"))


class _Unclosable(io.RawIOBase):
    """A view of a spool for Arrow's file wrappers, whose ``close`` leaves the spool open."""

    def __init__(self, spool: SealedSpool) -> None:
        super().__init__()
        self._spool = spool

    def writable(self) -> bool:
        return self._spool.writable()

    def readable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        return self._spool.write(data)

    def readinto(self, buffer: Any) -> int:
        return self._spool.readinto(buffer)


def _merged(
    db: Session,
    hub: Hub,
    dataset: Dataset,
    base: int,
    keys: KeySet,
    target: pa.Schema,
    upserted: SealedSpool | None,
    counts: dict[str, int],
) -> Iterator[pa.RecordBatch]:
    """The new version's rows: the stored ones whose key is not in ``keys``, then the upserted.

    Counts the rows kept and dropped into ``counts`` as they stream.
    """
    if base:
        for batch in _stored_batches(db, hub, dataset, base, target):
            stored = pa.Table.from_batches([batch])
            replaced = keys.contains(stored.select(keys.columns))
            kept = stored.filter(pa.array(~replaced))
            counts["rows_kept"] += kept.num_rows
            counts["rows_replaced_or_deleted"] += stored.num_rows - kept.num_rows
            yield from kept.to_batches()
    if upserted is not None:
        for batch in _replayed(upserted):
            yield batch.cast(target)


def _seal_quarantine(
    db: Session,
    hub: Hub,
    actor: Actor,
    dataset: Dataset,
    ingest_id: str,
    rejections: list[Rejection],
) -> tuple[bytes, bytes]:
    """The rejected values sealed under a fresh key, itself wrapped by the dataset's data key.

    Purging the dataset destroys the data key, so the quarantine is crypto-shredded with it.
    """
    secret = crypto.new_data_key()
    context = f"ingest-quarantine:{ingest_id}".encode()
    values = json.dumps([r.value for r in rejections]).encode()
    wrapped = storage.seal_under_dataset_key(
        db=db, hub=hub, actor=actor, dataset=dataset, secret=secret, context=context
    )
    return crypto.aead_encrypt(secret, values, context=context), wrapped


def _record(
    db: Session,
    hub: Hub,
    actor: Actor,
    dataset: Dataset,
    table: TableSource,
    source: Path | BinaryIO,
    filename: str,
    mode: IngestMode,
    key: list[str] | None,
    max_error_rate: float,
    status: IngestStatus,
    version: int | None,
    tally: Tally,
    extra: dict[str, Any],
    started: Any,
) -> IngestRecord:
    ingest_id = secrets.token_hex(16)
    sealed, wrapped = (
        _seal_quarantine(db, hub, actor, dataset, ingest_id, tally.rejections)
        if tally.rejections
        else (None, None)
    )
    details: dict[str, Any] = dict(extra)
    if table.dialect is not None:
        details["encoding"] = table.dialect.encoding
        if table.format == "csv":
            details["delimiter"] = table.dialect.delimiter
    record = IngestRecord(
        id=ingest_id,
        dataset_id=dataset.id,
        actor_email=actor.email,
        filename=filename[:300],
        file_sha256=table.sha256() or _sha256(source),
        file_bytes=table.size or 0,
        format=table.format,
        mode=mode,
        key=key,
        max_error_rate=max_error_rate,
        status=status.value,
        version=version,
        rows_read=tally.rows_read,
        rows_accepted=tally.rows_accepted if status is IngestStatus.stored else 0,
        rows_rejected=tally.rows_rejected,
        errors_by_rule={rule: tally.errors.get(rule, 0) for rule in RULES},
        rejections=[r.public() for r in tally.rejections],
        quarantine=sealed,
        quarantine_key=wrapped,
        details=details,
        started_at=started,
        finished_at=utcnow(),
    )
    record.dataset = dataset
    db.add(record)
    db.flush()
    audit.record(
        db,
        actor=actor,
        action="dataset.ingest",
        outcome="allowed",
        agency=dataset.agency.slug,
        resource=dataset.ref,
        version=version,
        rows=record.rows_accepted,
        details={
            "ingest": ingest_id,
            "mode": mode,
            "status": status.value,
            "rows_read": tally.rows_read,
            "rows_rejected": tally.rows_rejected,
            "file_sha256": record.file_sha256,
        },
    )
    return record


def _sha256(source: Path | BinaryIO) -> str:
    digest = hashlib.sha256()
    with Source(source).open() as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# ---------------------------------------------------------------------------- reading records


def get_ingest(
    *, db: Session, hub: Hub, actor: Actor, dataset: Dataset, ingest_id: str
) -> IngestDetail:
    """The report and the quarantine; protected values masked unless the caller is a steward."""
    record = db.scalar(
        select(IngestRecord).where(
            IngestRecord.id == ingest_id, IngestRecord.dataset_id == dataset.id
        )
    )
    if record is None:
        raise NotFound(f"no ingest '{ingest_id}' of '{dataset.ref}'", code="ingest_not_found")
    authorize(actor, Action.ingest_read, agency_id=dataset.agency_id)
    report = IngestReport.of(record)
    values = _open_quarantine(db, hub, record)
    unmasked = is_allowed(actor, Action.ingest_run, agency_id=dataset.agency_id)
    schema = catalog.current_schema(db=db, dataset=dataset)
    # Shown only where the current schema says the field is not protected: a field the schema
    # no longer has (dropped or renamed since the ingest) may have held personal values.
    open_fields = {f.name for f in schema.fields if f.classification not in PROTECTED}
    rows = []
    for item, value in zip(record.rejections, values, strict=False):
        hide = not unmasked and item.get("field") not in open_fields
        rows.append(
            QuarantinedRow(
                **item,
                value=MASK if hide and value is not None else value,
                masked=hide and value is not None,
            )
        )
    audit.record(
        db,
        actor=actor,
        action="dataset.ingest.read",
        agency=dataset.agency.slug,
        resource=dataset.ref,
        details={"ingest": ingest_id, "masked": not unmasked},
    )
    return IngestDetail(**report.model_dump(), quarantine=rows)


def list_ingests(*, db: Session, actor: Actor, dataset: Dataset) -> list[IngestReport]:
    authorize(actor, Action.ingest_read, agency_id=dataset.agency_id)
    records = db.scalars(
        select(IngestRecord)
        .where(IngestRecord.dataset_id == dataset.id)
        .order_by(IngestRecord.started_at)
    )
    return [IngestReport.of(r) for r in records]


def _open_quarantine(db: Session, hub: Hub, record: IngestRecord) -> list[str | None]:
    if record.dataset.purged_at is not None:
        raise Gone("the dataset was purged; its quarantine is shredded", code="dataset_purged")
    if record.quarantine is None or record.quarantine_key is None:
        return []
    context = f"ingest-quarantine:{record.id}".encode()
    secret = storage.open_under_dataset_key(
        db=db, hub=hub, dataset=record.dataset, wrapped=record.quarantine_key, context=context
    )
    values: list[str | None] = json.loads(
        crypto.aead_decrypt(secret, record.quarantine, context=context)
    )
    return values
