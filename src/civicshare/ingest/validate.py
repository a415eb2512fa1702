"""Vectorised validation of record batches against a Table Schema.

Each batch of text columns is standardised field by field (``standardise.py``), then every rule
is evaluated as a boolean mask over the whole column with Arrow compute. Rows failing any rule
are rejected; the failures (row, field, rule, value) are collected only for the failing cells,
so the cost of a clean file is a handful of kernels per column, never a Python loop per cell.
Uniqueness across batches (``unique``, ``primaryKey``) is tracked in a DuckDB table of keyed
hashes that spills to disk instead of growing memory with the file.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from civicshare.catalog.tableschema import SchemaField, TableSchema
from civicshare.errors import Invalid
from civicshare.ingest import parsing
from civicshare.ingest.infer import sql_name
from civicshare.ingest.standardise import FieldStandardiser, fold_enum

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


class UniqueTracker:
    """Which keys were already seen, across all batches of one ingest.

    Keys are stored as 64-bit hashes salted with a random secret that lives only in this
    object: the temporary database can spill to disk without writing key values (which may be
    personal) in a recoverable form. A collision would reject a row as a duplicate wrongly;
    at 10 million keys the chance is about 3 in a million.
    """

    def __init__(self, memory_limit: str = "256MB") -> None:
        self._folder = tempfile.mkdtemp(prefix="civicshare-unique-")
        os.chmod(self._folder, 0o700)
        self._db = duckdb.connect(os.path.join(self._folder, "keys.duckdb"))
        self._db.execute(f"SET memory_limit='{memory_limit}'")
        self._db.execute(f"SET temp_directory='{self._folder}'")
        self._db.execute("SET threads=2")
        self._salt = secrets.token_hex(16)
        self._tables: set[str] = set()

    def _table(self, name: str) -> str:
        table = "seen_" + sql_name(name)
        if table not in self._tables:
            self._db.execute(f'CREATE TABLE "{table}" (h UBIGINT)')
            self._tables.add(table)
        return table

    def seed(self, name: str, keys: pa.Table) -> None:
        """Record keys that already exist (the stored version, for appends)."""
        table = self._table(name)
        columns = ", ".join(f'"{c}"' for c in keys.column_names)
        view = keys  # noqa: F841 (read by DuckDB by name)
        self._db.execute(f'INSERT INTO "{table}" SELECT hash(?, {columns}) FROM view', [self._salt])

    def duplicates(self, name: str, keys: pa.Table, candidates: pa.Array) -> pa.Array:
        """A mask of the rows whose key was seen before (earlier in the batch or before it).

        ``candidates`` marks the rows to consider; their keys are then recorded as seen.
        """
        table = self._table(name)
        columns = ", ".join(f'"{c}"' for c in keys.column_names)
        batch = keys.append_column(ROW_INDEX, pa.array(range(keys.num_rows), pa.int64()))
        batch = batch.filter(candidates)
        self._db.execute(
            f"CREATE OR REPLACE TEMP TABLE incoming AS "
            f"SELECT {ROW_INDEX} AS i, hash(?, {columns}) AS h FROM batch",
            [self._salt],
        )
        rows = self._db.execute(
            f"""SELECT i FROM (
                    SELECT i, h, row_number() OVER (PARTITION BY h ORDER BY i) AS n FROM incoming
                ) AS numbered
                WHERE n > 1 OR h IN (SELECT h FROM "{table}")"""
        ).to_arrow_table()
        self._db.execute(f'INSERT INTO "{table}" SELECT DISTINCT h FROM incoming')
        mask = pc.is_in(pa.array(range(keys.num_rows), pa.int64()), rows.column(0))
        return mask

    def close(self) -> None:
        self._db.close()
        shutil.rmtree(self._folder, ignore_errors=True)


class Validator:
    """Validates and standardises the batches of one file against one schema."""

    def __init__(
        self,
        schema: TableSchema,
        columns: Sequence[str],
        *,
        only_fields: Iterable[str] | None = None,
    ) -> None:
        self.schema = schema
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
        self.standardisers = {
            f.name: FieldStandardiser(f, schema.missingValues) for f in self.fields
        }
        self.bounds = {f.name: self._bounds(f) for f in self.fields}
        self.uniques = UniqueTracker()
        self.unique_fields = [
            f.name for f in self.fields if f.constraints.unique and [f.name] != schema.primaryKey
        ]
        self.primary_key = [name for name in schema.primaryKey if name in self.sources]
        self.details_left = MAX_DETAILS

    def close(self) -> None:
        self.uniques.close()

    def _bounds(self, schema_field: SchemaField) -> dict[str, pa.Scalar]:
        """``minimum``/``maximum`` converted to the field's stored type."""
        limits: dict[str, pa.Scalar] = {}
        standardise = FieldStandardiser(schema_field, [])
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
        if self.primary_key and all(k in keys.column_names for k in self.primary_key):
            self.uniques.seed("primaryKey", keys.select(self.primary_key))
        for name in self.unique_fields:
            if name in keys.column_names:
                self.uniques.seed(name, keys.select([name]).filter(pc.is_valid(keys.column(name))))

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
            if required:
                failures.append(
                    (schema_field.name, "required", result.missing, None, "a value is required")
                )
            values, checks = self._constraints(schema_field, values, raw)
            failures.extend(checks)
            columns[schema_field.name] = values
        rejected = _any(rows, [mask for _, _, mask, _, _ in failures])
        failures.extend(self._uniqueness(columns, raw_columns, pc.invert(rejected)))
        rejected = _any(rows, [mask for _, _, mask, _, _ in failures])
        accepted = pa.RecordBatch.from_arrays(
            [columns[f.name] for f in self.fields], schema=self.target.remove_metadata()
        ).filter(pc.invert(rejected))
        outcome = BatchOutcome(accepted, int(pc.sum(pc.cast(rejected, pa.int64())).as_py() or 0))
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
                allowed = FieldStandardiser(schema_field, [])(
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
        self, columns: dict[str, pa.Array], raw: dict[str, pa.Array], candidates: pa.Array
    ) -> list[tuple[str | None, str, pa.Array, pa.Array | None, str]]:
        checks: list[tuple[str | None, str, pa.Array, pa.Array | None, str]] = []
        if self.primary_key:
            keys = pa.table({name: columns[name] for name in self.primary_key})
            duplicate = self.uniques.duplicates("primaryKey", keys, candidates)
            label = ", ".join(self.primary_key)
            first = self.primary_key[0] if len(self.primary_key) == 1 else None
            checks.append(
                (
                    first if first else label,
                    "primaryKey",
                    duplicate,
                    raw[self.primary_key[0]] if first else None,
                    f"repeats a primary key ({label}) already seen",
                )
            )
            candidates = pc.and_(candidates, pc.invert(duplicate))
        for name in self.unique_fields:
            present = pc.and_(candidates, pc.is_valid(columns[name]))
            keys = pa.table({name: columns[name]})
            duplicate = self.uniques.duplicates(name, keys, present)
            checks.append((name, "unique", duplicate, raw[name], "repeats a value already seen"))
            candidates = pc.and_(candidates, pc.invert(duplicate))
        return checks


def _match_subset(
    schema: TableSchema, columns: Sequence[str], wanted: set[str]
) -> dict[str, str | None]:
    """Like ``match_columns`` for a subset of fields (delete files carry only the key)."""
    subset = TableSchema.model_validate(
        {
            "fields": [f.model_dump(by_alias=True) for f in schema.fields if f.name in wanted],
            "missingValues": schema.missingValues,
        }
    )
    return match_columns(subset, columns)


def _any(rows: int, masks: list[pa.Array]) -> pa.Array:
    combined = pa.array([False] * rows, pa.bool_()) if not masks else masks[0]
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


__all__ = [
    "RULES",
    "BatchOutcome",
    "Rejection",
    "UniqueTracker",
    "Validator",
    "match_columns",
    "parsing",
]
