"""A policy view: what one recipient may see of one dataset version, as SQL over its columns.

The query engine splices ``select_sql`` into the user's query in place of the dataset, so
treatments, the row filter and objections are applied inside DuckDB next to the scan (fast,
and the untreated columns never reach the query's output). Secrets (pseudonym and objection
keys) appear only in the executed SQL, never in ``explain``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import pyarrow as pa

from civicshare.errors import Forbidden
from civicshare.policy.predicates import predicate_columns
from civicshare.policy.treatments import (
    CLEAR,
    Treatment,
    hmac_sql,
    quote_identifier,
    sql_literal,
    treatment_sql,
)

DEFAULT_MIN_CELL = 11
RECORD_KEY = "__cs_rkey"
RECORD_KEY_MODULUS = 2**32

SourceReader = Callable[[list[str]], pa.RecordBatchReader | pa.Table]
# Fields that never shape the SQL of a view (how rows are read, the ORM rows it came from).
_NOT_IN_SQL = frozenset({"reader", "dataset", "agreement"})


@dataclass(frozen=True)
class GrantedColumn:
    name: str
    treatment: Treatment = CLEAR


@dataclass(frozen=True)
class Exclusion:
    """Rows whose ``column`` value's keyed hash is among ``hashes`` are left out (objections)."""

    column: str
    key: bytes = field(repr=False)
    hashes: frozenset[str]


@dataclass
class PolicyView:
    ref: str
    schema: pa.Schema  # the stored schema: every column of the provider
    columns: tuple[GrantedColumn, ...]
    reader: SourceReader = field(repr=False)
    version: int | None = None
    rows: int | None = None  # the version's row count, when known before reading
    agreement_id: str | None = None
    purpose: str | None = None
    row_filter: str | None = None
    exclusions: tuple[Exclusion, ...] = ()
    aggregate_only: bool = False
    min_cell: int = DEFAULT_MIN_CELL
    record_key_columns: tuple[str, ...] = ()
    record_key_salt: int = 0
    pseudonym_key: bytes = field(default=b"", repr=False)
    access: str = "agreement"  # "own" | "public" | "agreement"
    dataset: Any = field(default=None, repr=False)
    agreement: Any = field(default=None, repr=False)

    def sql_key(self) -> tuple[Hashable, ...]:
        """Every field that may shape SQL over this view (the query rewrite's memo key).

        Listed by exclusion, so a field added later is part of the key unless named above.
        """
        return tuple(
            getattr(self, item.name) for item in fields(self) if item.name not in _NOT_IN_SQL
        )

    @property
    def granted(self) -> dict[str, GrantedColumn]:
        return {column.name.lower(): column for column in self.columns}

    @property
    def provider_columns(self) -> list[str]:
        return [name.lower() for name in self.schema.names]

    def read_columns(self) -> list[str]:
        """Stored columns the view needs: granted, filtered on, objection keys, record keys."""
        wanted = {column.name.lower() for column in self.columns}
        if self.row_filter:
            wanted |= predicate_columns(self.row_filter)
        wanted |= {exclusion.column.lower() for exclusion in self.exclusions}
        if self.aggregate_only:
            keys = self.record_key_columns or tuple(self.schema.names)
            wanted |= {name.lower() for name in keys}
        return [name for name in self.schema.names if name.lower() in wanted]

    def select_sql(
        self, source: str, *, record_key: bool = False, raw: Sequence[tuple[str, str]] = ()
    ) -> str:
        """``SELECT <treated columns> FROM source WHERE <filter> AND <no objection>``.

        ``raw`` adds stored (untreated) columns under internal names, for the query engine's
        grouping before treatment: it applies the treatment to them before anything leaves
        the query (see query/regroup.py), and user expressions cannot name them.
        """
        items = [
            f"{self._treated(column)} AS {quote_identifier(column.name)}" for column in self.columns
        ]
        items += [f"{quote_identifier(column)} AS {alias}" for column, alias in raw]
        if record_key:
            items.append(f"{self._record_key_sql()} AS {RECORD_KEY}")
        sql = f"SELECT {', '.join(items)} FROM {source}"
        conditions = self._conditions()
        if conditions:
            sql += " WHERE " + " AND ".join(conditions)
        return sql

    def _treated(self, column: GrantedColumn) -> str:
        return self.treated_sql(column, column.name)

    def treated_sql(self, column: GrantedColumn, expression_column: str) -> str:
        """The treatment of ``column`` applied to the column named ``expression_column``."""
        return treatment_sql(
            column.treatment, expression_column, self.stored_type(column.name), self.pseudonym_key
        )

    def stored_type(self, name: str) -> pa.DataType:
        return self.schema.field(self.schema.get_field_index(name)).type

    def _conditions(self) -> list[str]:
        conditions = [f"({self.row_filter})"] if self.row_filter else []
        for exclusion in self.exclusions:
            if not exclusion.hashes:
                continue
            text = f"CAST({quote_identifier(exclusion.column)} AS VARCHAR)"
            hashes = ", ".join(sql_literal(h) for h in sorted(exclusion.hashes))
            keyed = hmac_sql(text, exclusion.key)
            conditions.append(f"({text} IS NULL OR {keyed} NOT IN ({hashes}))")
        return conditions

    def _record_key_sql(self) -> str:
        names = self.record_key_columns or tuple(self.schema.names)
        columns = ", ".join(quote_identifier(name) for name in names)
        return f"hash({self.record_key_salt}, {columns}) % {RECORD_KEY_MODULUS}"

    def explain(self) -> dict[str, Any]:
        """The effective policy, without secrets or personal values."""
        return {
            "dataset": self.ref,
            "version": self.version,
            "access": self.access,
            "agreement": self.agreement_id,
            "purpose": self.purpose,
            "columns": [
                {"name": column.name, "treatment": column.treatment.spec} for column in self.columns
            ],
            "row_filter": self.row_filter,
            "objections_excluded": sum(len(e.hashes) for e in self.exclusions),
            "aggregate_only": self.aggregate_only,
            "min_cell": self.min_cell if self.aggregate_only else None,
        }

    def arrow(self) -> pa.RecordBatchReader:
        """The treated, filtered, objection-free rows (row-level views only)."""
        if self.aggregate_only:
            raise Forbidden(
                f"{self.ref} is shared for aggregate queries only", code="aggregate_only"
            )
        from civicshare.query.sandbox import sandbox

        source = self.reader(self.read_columns())
        return sandbox().stream(self.select_sql("__cs_src_0"), {"__cs_src_0": source})
