"""Vectorised validation of record batches against a Table Schema.

Each batch of text columns is standardised field by field (``standardise.py``), then every rule
is evaluated as a boolean mask over the whole column with Arrow compute. Rows failing any rule
are rejected; the failures (row, field, rule, value) are collected only for the failing cells,
so the cost of a clean file is a handful of kernels per column, never a Python loop per cell.
Uniqueness across batches (``unique``, ``primaryKey``) is tracked in a ledger of 64-bit key
codes that spills to encrypted files instead of growing memory with the file.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from civicshare import crypto
from civicshare.catalog.tableschema import SchemaField, TableSchema
from civicshare.errors import Invalid
from civicshare.ingest.infer import sql_name
from civicshare.ingest.keyset import KeySet, key_codes
from civicshare.ingest.standardise import FieldStandardiser, Standardised, fold_enum

RULES = (
    "type",
    "format",
    "required",
    "unique",
    "enum",
    "pattern",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "primaryKey",
)
MAX_VALUE_CHARS = 200
MAX_DETAILS = 10_000  # rejections kept in detail per ingest; the counts are always complete
ROW_INDEX = "__row__"


@dataclass(frozen=True)
class Rejection:
    """One failed check: the row (1-based, header excluded), the field, the rule and the value."""

    row: int
    field: str | None
    rule: str
    message: str
    value: str | None = None

    def public(self) -> dict[str, Any]:
        return {"row": self.row, "field": self.field, "rule": self.rule, "message": self.message}


@dataclass
class BatchOutcome:
    accepted: pa.RecordBatch
    rejected_rows: int
    rejections: list[Rejection] = field(default_factory=list)
    errors_by_rule: Counter[str] = field(default_factory=Counter)


def _default_format(field: SchemaField) -> bool:
    return field.format in ("default", "any", "")


def _failure_rule(field: SchemaField) -> str:
    """Unreadable values break ``format`` when the schema declares one, else ``type``."""
    return "type" if _default_format(field) else "format"


def _describe(field: SchemaField) -> str:
    return field.type if _default_format(field) else f"{field.type} in format {field.format}"


def match_columns(schema: TableSchema, columns: Sequence[str]) -> dict[str, str | None]:
    """For each schema field, the file column holding it (by name, title or SQL-safe name)."""
    remaining = list(columns)
    found: dict[str, str | None] = {}
    by_sql: dict[str, str] = {}
    for column in columns:
        by_sql.setdefault(sql_name(column), column)
    for schema_field in schema.fields:
        choice = None
        for candidate in (schema_field.name, schema_field.title):
            if candidate is not None and candidate in remaining:
                choice = candidate
                break
        if choice is None and sql_name(schema_field.name) in by_sql:
            candidate = by_sql[sql_name(schema_field.name)]
            choice = candidate if candidate in remaining else None
        if choice is not None:
            remaining.remove(choice)
        found[schema_field.name] = choice
    if remaining:
        raise Invalid(
            f"the file has columns the schema does not declare: {', '.join(remaining[:20])}",
            code="unexpected_columns",
            details={"columns": remaining},
        )
    return found


_FIBONACCI = pa.scalar(-7046029254386353131, pa.int64())  # 0x9E3779B97F4A7C15 as int64


@dataclass(frozen=True)
class _Partitioned:
    """Ledger entries ordered by partition (stably, so rows stay in order within one)."""

    entries: pa.RecordBatch
    starts: list[int]  # where each partition begins in ``entries``, then the end

    @classmethod
    def of(cls, entries: pa.RecordBatch, partitions: int) -> _Partitioned:
        # Integer keys are often consecutive: mix the bits (Fibonacci hashing) before taking the
        # top ones, so each partition gets its share. The multiplication wraps by design.
        mixed = pc.multiply(entries.column("h"), _FIBONACCI)
        part = pc.bit_wise_and(pc.shift_right(mixed, 58), partitions - 1)
        counts = [0] * partitions
        for item in pc.value_counts(part).to_pylist():
            counts[int(item["values"])] = int(item["counts"])
        ordered = entries.take(pc.sort_indices(part))
        return cls(ordered, list(itertools.accumulate(counts, initial=0)))

    def share(self, partition: int) -> pa.RecordBatch:
        start = self.starts[partition]
        return self.entries.slice(start, self.starts[partition + 1] - start)


class KeyLedger:
    """Every key seen in one pass over a file, to find repeats once the pass is over.

    Each key becomes one 64-bit code next to its row number: the value itself for a single
    integer or temporal column (exact), else DuckDB's 64-bit hash of the key columns. Each batch's
    codes are ordered by partition (their top bits, one of ``PARTITIONS``) as they are recorded;
    the repeats are found at the end by sorting. Memory is fixed: once ``buffer_entries`` codes
    are held, each partition's share is appended to its spill file, **encrypted** (AES-256-GCM
    under a key that exists only in this object), since even a hash of a small key space can be
    reversed by trying every key. At the end each partition is sorted on its own, so the peak is
    one partition, not the whole ledger. A hash collision between two different keys would flag
    a row as a repeat wrongly: for n keys the chance is about n²/2⁶⁵ (3 in a million at 10
    million string keys; zero for single integer or date keys, which are not hashed).
    """

    PARTITIONS = 64

    def __init__(self, buffer_entries: int = 1 << 18) -> None:
        self.buffer_entries = buffer_entries
        self._secret = crypto.new_data_key()
        self._folder: str | None = None
        self._buffers: dict[str, list[_Partitioned]] = {}
        self._buffered = 0
        self._blocks: dict[tuple[str, int], int] = {}  # spilled blocks per (rule, partition)
        self._rules: list[str] = []

    def _codes(self, keys: pa.Table) -> pa.Array:
        return key_codes(keys)

    def record(self, rule: str, keys: pa.Table, rows: pa.Array) -> None:
        """Note the keys of ``rows`` (stored keys are recorded as row 0, before any file row)."""
        if rule not in self._buffers:
            self._buffers[rule] = []
            self._rules.append(rule)
        if keys.num_rows == 0:
            return
        codes = self._codes(keys)
        entries = pa.RecordBatch.from_arrays([codes, pc.cast(rows, pa.int64())], names=["h", "r"])
        self._buffers[rule].append(_Partitioned.of(entries, self.PARTITIONS))
        self._buffered += keys.num_rows
        if self._buffered >= self.buffer_entries:
            self._spill()

    def _spill(self) -> None:
        # Partitioned batch by batch as recorded, so spilling allocates one partition's share at
        # a time. Sorting the whole buffer here instead took ~15 MB more for a moment, and when
        # that met the Parquet writer's busiest moment it set the ingest's peak RSS (higher the
        # longer the file, as the two met at worse alignments).
        if self._folder is None:
            self._folder = tempfile.mkdtemp(prefix="civicshare-keys-")
            os.chmod(self._folder, 0o700)
        for rule, pieces in self._buffers.items():
            for partition in range(self.PARTITIONS):
                shares = [share for piece in pieces if (share := piece.share(partition)).num_rows]
                if shares:
                    self._append(rule, partition, pa.concat_batches(shares))
            self._buffers[rule] = []
        self._buffered = 0

    def _path(self, rule: str, partition: int) -> str:
        assert self._folder is not None
        return os.path.join(self._folder, f"{self._rules.index(rule)}-{partition}.bin")

    def _context(self, rule: str, partition: int, block: int) -> bytes:
        return f"key-ledger:{self._rules.index(rule)}:{partition}:{block}".encode()

    def _append(self, rule: str, partition: int, entries: pa.RecordBatch) -> None:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, entries.schema) as writer:
            writer.write_batch(entries)
        block = self._blocks.get((rule, partition), 0)
        sealed = crypto.aead_encrypt(
            self._secret,
            sink.getvalue().to_pybytes(),
            context=self._context(rule, partition, block),
        )
        with open(self._path(rule, partition), "ab") as handle:
            handle.write(len(sealed).to_bytes(8, "big") + sealed)
        self._blocks[(rule, partition)] = block + 1

    def _partition(self, rule: str, partition: int) -> pa.Table:
        tables = []
        with open(self._path(rule, partition), "rb") as handle:
            for block in range(self._blocks[(rule, partition)]):
                size = int.from_bytes(handle.read(8), "big")
                plain = crypto.aead_decrypt(
                    self._secret, handle.read(size), context=self._context(rule, partition, block)
                )
                tables.append(pa.ipc.open_stream(plain).read_all())
        return pa.concat_tables(tables)

    def repeats(self) -> dict[str, pa.Array]:
        """Per rule, the row numbers whose key an earlier row (or the stored data) already had."""
        if self._folder is not None and self._buffered:
            self._spill()
        found: dict[str, pa.Array] = {}
        for rule in self._rules:
            parts: Iterable[pa.Table]
            if self._folder is None:
                # Each piece is in partition order, but equal codes share a partition and keep
                # their row order (stable sort), which is all ``_later_rows`` needs.
                batches = [piece.entries for piece in self._buffers[rule]]
                parts = [pa.Table.from_batches(batches)] if batches else []
            else:
                parts = (
                    self._partition(rule, p)
                    for p in range(self.PARTITIONS)
                    if (rule, p) in self._blocks
                )
            rows = [r for r in (_later_rows(part) for part in parts) if len(r)]
            if rows:
                merged = pa.concat_arrays(rows)
                found[rule] = merged.take(pc.sort_indices(merged))
        return found

    def close(self) -> None:
        self._buffers.clear()
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None


def _later_rows(entries: pa.Table) -> pa.Array:
    """The rows whose code an earlier row of ``entries`` already has.

    Entries are recorded in row order (stored keys first, as row 0), and the sort is stable, so
    within a run of equal codes the first entry is the earliest row: every other one repeats it.
    """
    if entries.num_rows < 2:
        return pa.array([], pa.int64())
    ordered = entries.take(pc.sort_indices(entries.column("h")))
    codes = ordered.column("h").combine_chunks()
    rows = ordered.column("r").combine_chunks()
    same = pc.equal(codes.slice(1), codes.slice(0, len(codes) - 1))
    return rows.slice(1).filter(same)


class Validator:
    """Validates and standardises the batches of one file against one schema."""

    def __init__(
        self,
        schema: TableSchema,
        columns: Sequence[str],
        *,
        only_fields: Iterable[str] | None = None,
        key: Iterable[str] = (),
        check_unique: bool = True,
        iso_columns: Iterable[str] = (),
        iso_cells: Iterable[str] = (),
    ) -> None:
        self.schema = schema
        # An upsert's or delete's key: a row without it would match every stored row that
        # lacks it too (keys compare as IS NOT DISTINCT FROM), so it is required like a
        # primary key.
        self.key = set(key)
        wanted = set(only_fields) if only_fields is not None else None
        self.fields = [f for f in schema.fields if wanted is None or f.name in wanted]
        self.sources = (
            match_columns(schema, columns)
            if wanted is None
            else _match_subset(schema, columns, wanted)
        )
        self.target = pa.schema([f.arrow_field() for f in self.fields])
        required = [
            f.name
            for f in self.fields
            if self.sources.get(f.name) is None
            and (f.constraints.required or f.name in schema.primaryKey)
        ]
        if required:
            raise Invalid(
                f"the file lacks required columns: {', '.join(required)}",
                code="missing_columns",
                details={"columns": required},
            )
        iso = set(iso_columns)
        # Date fields fed by a typed column: a timestamp at midnight names a date (pandas
        # writes a column of dates as timestamps).
        self.midnight_dates = {
            f.name for f in self.fields if f.type == "date" and self.sources.get(f.name) in iso
        }
        typed_cells = set(iso_cells)
        self.standardisers: dict[str, FieldStandardiser | _TextOrIso] = {}
        for f in self.fields:
            source = self.sources.get(f.name)
            if source in iso:
                self.standardisers[f.name] = FieldStandardiser(_as_iso(f), schema.missingValues)
            elif source in typed_cells and _as_iso(f) != f:
                self.standardisers[f.name] = _TextOrIso(f, schema.missingValues)
            else:
                self.standardisers[f.name] = FieldStandardiser(f, schema.missingValues)
        self.bounds = {f.name: self._bounds(f) for f in self.fields}
        for schema_field in self.fields:
            _check_pattern(schema_field)
        self.ledger = KeyLedger()
        # Repeated keys found by an earlier pass over the same file (see ``repeats``).
        self.known_repeats: dict[str, pa.Array] = {}
        # Upserts: per constraint (``primaryKey``, ``unique:NAME``), the values that stored rows
        # the upsert keeps hold (found after an earlier pass), as a table of the constraint's
        # columns; a file row with one of them would break the constraint.
        self.kept_values: dict[str, pa.Table] = {}
        self._kept_sets: dict[str, KeySet] = {}
        # ``check_unique`` is off for a delete: its file lists keys, and one listed twice is
        # still one key to drop, not a row breaking the primary key.
        self.unique_fields = [
            f.name
            for f in self.fields
            if check_unique and f.constraints.unique and [f.name] != schema.primaryKey
        ]
        self.primary_key = [
            name for name in schema.primaryKey if check_unique and name in self.sources
        ]
        self.details_left = MAX_DETAILS

    def close(self) -> None:
        self.ledger.close()
        for kept in self._kept_sets.values():
            kept.close()
        self._kept_sets.clear()

    def repeats(self) -> dict[str, pa.Array]:
        """Rows whose primary key or unique value repeats an earlier one, after a full pass."""
        return self.ledger.repeats()

    def _bounds(self, schema_field: SchemaField) -> dict[str, pa.Scalar]:
        """``minimum``/``maximum`` converted to the field's stored type."""
        limits: dict[str, pa.Scalar] = {}
        standardise = FieldStandardiser.of_schema_values(schema_field)
        for rule in ("minimum", "maximum"):
            bound = getattr(schema_field.constraints, rule)
            if bound is None:
                continue
            parsed = standardise(pa.array([str(bound)], pa.string())).values
            if parsed.null_count:
                raise Invalid(
                    f"{rule} {bound!r} of field '{schema_field.name}' is not a {schema_field.type}",
                    code="bad_schema",
                )
            limits[rule] = parsed[0]
        return limits

    def seed_existing(self, keys: pa.Table) -> None:
        """Keys already stored (appends must not repeat them)."""
        zeros = pa.array([0] * keys.num_rows, pa.int64())
        if self.primary_key and all(k in keys.column_names for k in self.primary_key):
            self.ledger.record("primaryKey", keys.select(self.primary_key), zeros)
        for name in self.unique_fields:
            if name in keys.column_names:
                present = pc.is_valid(keys.column(name).combine_chunks())
                self.ledger.record(
                    f"unique:{name}", keys.select([name]).filter(present), zeros.filter(present)
                )

    def validate(self, batch: pa.RecordBatch, first_row: int) -> BatchOutcome:
        """Standardise ``batch`` (rows numbered from ``first_row``) and reject failing rows."""
        rows = batch.num_rows
        failures: list[tuple[str | None, str, pa.Array, pa.Array | None, str]] = []
        columns: dict[str, pa.Array] = {}
        raw_columns: dict[str, pa.Array] = {}
        for schema_field in self.fields:
            source = self.sources.get(schema_field.name)
            index = batch.schema.get_field_index(source) if source is not None else -1
            raw = batch.column(index) if index >= 0 else pa.nulls(rows, pa.string())
            raw_columns[schema_field.name] = raw
            if schema_field.name in self.midnight_dates:
                raw = pc.replace_substring_regex(raw, r"T00:00:00(?:\.0+)?$", "")
            result = self.standardisers[schema_field.name](raw)
            values = result.values
            rule = _failure_rule(schema_field)
            failures.append(
                (
                    schema_field.name,
                    rule,
                    result.unreadable,
                    raw,
                    f"not a {_describe(schema_field)}",
                )
            )
            required = schema_field.constraints.required or schema_field.name in self.primary_key
            if required or schema_field.name in self.key:
                message = "a value is required" if required else "a key value is required"
                failures.append((schema_field.name, "required", result.missing, None, message))
            values, checks = self._constraints(schema_field, values, raw)
            failures.extend(checks)
            columns[schema_field.name] = values
        rejected = _any(rows, [mask for _, _, mask, _, _ in failures])
        failures.extend(self._uniqueness(columns, raw_columns, first_row))
        rejected = _any(rows, [mask for _, _, mask, _, _ in failures])
        accepted = pa.RecordBatch.from_arrays(
            [columns[f.name] for f in self.fields], schema=self.target.remove_metadata()
        )
        rejected_rows = int(pc.sum(pc.cast(rejected, pa.int64())).as_py() or 0)
        if rejected_rows:  # filtering copies every column: only when something goes
            accepted = accepted.filter(pc.invert(rejected))
        outcome = BatchOutcome(accepted, rejected_rows)
        for name, rule, mask, raw, message in failures:
            self.details_left -= _collect(
                outcome, name, rule, mask, raw, message, first_row, self.details_left
            )
        return outcome

    def _constraints(
        self, schema_field: SchemaField, values: pa.Array, raw: pa.Array
    ) -> tuple[pa.Array, list[tuple[str | None, str, pa.Array, pa.Array | None, str]]]:
        name, constraints = schema_field.name, schema_field.constraints
        checks: list[tuple[str | None, str, pa.Array, pa.Array | None, str]] = []
        if constraints.enum is not None:
            if pa.types.is_string(values.type):
                values, outside = fold_enum(values, constraints.enum)
                outside = pc.and_(outside, pc.is_valid(raw))
            else:
                allowed = FieldStandardiser.of_schema_values(schema_field)(
                    pa.array([str(v) for v in constraints.enum], pa.string())
                ).values
                outside = pc.invert(pc.fill_null(pc.is_in(values, allowed), True))
            checks.append((name, "enum", outside, raw, "not one of the allowed values"))
        if constraints.pattern is not None and pa.types.is_string(values.type):
            matches = pc.match_substring_regex(values, f"^(?:{constraints.pattern})$")
            checks.append(
                (
                    name,
                    "pattern",
                    pc.invert(pc.fill_null(matches, True)),
                    raw,
                    "does not match the pattern",
                )
            )
        for rule, compare in (("minimum", pc.less), ("maximum", pc.greater)):
            bound = self.bounds[name].get(rule)
            if bound is not None:
                outside = pc.fill_null(compare(values, bound), False)
                word = "below the minimum" if rule == "minimum" else "above the maximum"
                checks.append((name, rule, outside, raw, f"{word} {getattr(constraints, rule)}"))
        if pa.types.is_string(values.type):
            length = pc.utf8_length(values)
            if constraints.minLength is not None:
                short = pc.fill_null(pc.less(length, constraints.minLength), False)
                checks.append(
                    (
                        name,
                        "minLength",
                        short,
                        raw,
                        f"shorter than {constraints.minLength} characters",
                    )
                )
            if constraints.maxLength is not None:
                long = pc.fill_null(pc.greater(length, constraints.maxLength), False)
                checks.append(
                    (
                        name,
                        "maxLength",
                        long,
                        raw,
                        f"longer than {constraints.maxLength} characters",
                    )
                )
        return values, checks

    def _uniqueness(
        self, columns: dict[str, pa.Array], raw: dict[str, pa.Array], first_row: int
    ) -> list[tuple[str | None, str, pa.Array, pa.Array | None, str]]:
        """Record this batch's keys; flag the rows an earlier pass found to be repeats.

        The first occurrence of a key wins, whatever else is wrong with its row (as in
        Frictionless): a later row with the same key is a repeat.
        """
        checks: list[tuple[str | None, str, pa.Array, pa.Array | None, str]] = []
        size = len(next(iter(columns.values()))) if columns else 0
        numbers = row_numbers(first_row, size)
        if self.primary_key:
            keys = pa.table({name: columns[name] for name in self.primary_key})
            complete = _all_valid(keys)
            self.ledger.record("primaryKey", keys.filter(complete), numbers.filter(complete))
            label = ", ".join(self.primary_key)
            single = len(self.primary_key) == 1
            checks.append(
                (
                    self.primary_key[0] if single else label,
                    "primaryKey",
                    self._known(numbers, "primaryKey"),
                    raw[self.primary_key[0]] if single else None,
                    f"repeats a primary key ({label}) of an earlier row",
                )
            )
        for name in self.unique_fields:
            present = pc.is_valid(columns[name])
            keys = pa.table({name: columns[name]}).filter(present)
            self.ledger.record(f"unique:{name}", keys, numbers.filter(present))
            checks.append(
                (
                    name,
                    "unique",
                    self._known(numbers, f"unique:{name}"),
                    raw[name],
                    "repeats the value of an earlier row",
                )
            )
        for constraint in self.kept_values:
            checks.append(self._kept_check(constraint, columns, raw, numbers))
        return checks

    def _kept_check(
        self,
        constraint: str,
        columns: dict[str, pa.Array],
        raw: dict[str, pa.Array],
        numbers: pa.Array,
    ) -> tuple[str | None, str, pa.Array, pa.Array | None, str]:
        """Rows holding a value of ``constraint`` that a stored row the upsert keeps holds."""
        names = self.kept_values[constraint].column_names
        values = pa.table({name: columns[name] for name in names})
        kept = self._kept_sets.get(constraint)
        if kept is None:
            kept = KeySet(self.kept_values[constraint].cast(values.schema))
            self._kept_sets[constraint] = kept
        # A row already flagged as a repeat within the file is not counted twice for the rule.
        repeat = np.asarray(self._known(numbers, constraint).to_numpy(zero_copy_only=False))
        held = pa.array(kept.contains(values) & ~repeat.astype(np.bool_))
        single = len(names) == 1
        return (
            names[0] if single else ", ".join(names),
            "primaryKey" if constraint == "primaryKey" else "unique",
            held,
            raw[names[0]] if single else None,
            "repeats the value of a stored row that this upsert keeps",
        )

    def _known(self, numbers: pa.Array, rule: str) -> pa.Array:
        repeats = self.known_repeats.get(rule)
        if repeats is None or len(repeats) == 0:
            return pa.repeat(pa.scalar(False), len(numbers))
        return pc.is_in(numbers, repeats)


def _as_iso(schema_field: SchemaField) -> SchemaField:
    """A temporal field as it reads a column the file typed (ISO text), whatever text format
    the field declares for text sources."""
    if schema_field.type not in ("date", "datetime", "time"):
        return schema_field
    return schema_field.model_copy(update={"format": "default"})


class _TextOrIso:
    """A temporal field over a column whose cells are text in the field's ``format`` or typed
    dates and times given as ISO 8601 (an Excel date cell): each cell read the way it parses."""

    def __init__(self, schema_field: SchemaField, missing_values: Sequence[str]) -> None:
        self._text = FieldStandardiser(schema_field, missing_values)
        self._iso = FieldStandardiser(_as_iso(schema_field), missing_values)

    def __call__(self, raw: pa.Array) -> Standardised:
        text = self._text(raw)
        if not pc.any(text.unreadable).as_py():
            return text
        iso = self._iso(raw)
        return Standardised(
            pc.if_else(text.unreadable, iso.values, text.values),
            text.missing,
            pc.and_(text.unreadable, iso.unreadable),
        )


def _check_pattern(schema_field: SchemaField) -> None:
    """Refuse, before reading, a pattern that Python accepts but Arrow's RE2 cannot run.

    RE2 has no lookaround or backreferences; found only at the first batch, such a pattern
    escaped as an Arrow error.
    """
    pattern = schema_field.constraints.pattern
    if pattern is None:
        return
    try:
        pc.match_substring_regex(pa.array([""], pa.string()), f"^(?:{pattern})$")
    except pa.ArrowInvalid:
        raise Invalid(
            f"the pattern of field '{schema_field.name}' uses regular expression syntax that "
            "validation does not support (lookaround, backreferences)",
            code="bad_schema",
        ) from None


_OFFSETS: list[pa.Array] = [pa.array([], pa.int64())]


def _offsets(size: int) -> pa.Array:
    """``0 … size - 1``, sliced from one array that grows to the largest batch seen."""
    if len(_OFFSETS[0]) < size:
        _OFFSETS[0] = pa.array(range(max(size, 2 * len(_OFFSETS[0]))), pa.int64())
    return _OFFSETS[0].slice(0, size)


def row_numbers(first: int, size: int) -> pa.Array:
    """``first, first + 1, …`` as an int64 array."""
    return pc.add(_offsets(size), first)


def _all_valid(table: pa.Table) -> pa.Array:
    masks = [pc.is_valid(column) for column in table.columns]
    result = masks[0]
    for mask in masks[1:]:
        result = pc.and_(result, mask)
    return result.combine_chunks() if isinstance(result, pa.ChunkedArray) else result


def _match_subset(
    schema: TableSchema, columns: Sequence[str], wanted: set[str]
) -> dict[str, str | None]:
    """Like ``match_columns`` for a subset of fields (delete files carry only the key).

    The file may still carry the schema's other columns (a delete list exported from the
    dataset itself): they are matched, then left out; only undeclared columns are refused.
    """
    found = match_columns(schema, columns)
    return {name: column for name, column in found.items() if name in wanted}


def _any(rows: int, masks: list[pa.Array]) -> pa.Array:
    combined = pa.repeat(pa.scalar(False), rows) if not masks else masks[0]
    for mask in masks[1:]:
        combined = pc.or_(combined, mask)
    return pc.fill_null(combined, False)


def _collect(
    outcome: BatchOutcome,
    name: str | None,
    rule: str,
    mask: pa.Array,
    raw: pa.Array | None,
    message: str,
    first_row: int,
    budget: int,
) -> int:
    """Count the failing cells; detail at most ``budget`` of them. Returns how many it detailed."""
    mask = pc.fill_null(mask, False)
    if not pc.any(mask).as_py():
        return 0
    indices = pc.indices_nonzero(mask)
    outcome.errors_by_rule[rule] += len(indices)
    indices = indices.slice(0, max(budget, 0))
    values = pc.take(raw, indices).to_pylist() if raw is not None else [None] * len(indices)
    for index, value in zip(indices.to_pylist(), values, strict=True):
        text = None if value is None else str(value)[:MAX_VALUE_CHARS]
        outcome.rejections.append(Rejection(first_row + index, name, rule, message, text))
    return len(indices)
