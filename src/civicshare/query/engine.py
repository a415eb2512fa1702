"""Executing a plan in the sandbox and applying disclosure control to aggregate-only results."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from civicshare.query.disclosure import Cell, released_count, suppress
from civicshare.query.rewrite import AggregatePlan, Plan
from civicshare.query.sandbox import DEFAULT_TIMEOUT_SECONDS, ArrowSource, sandbox

DEFAULT_MAX_ROWS = 10_000
HARD_MAX_ROWS = 1_000_000


@dataclass
class QueryOutput:
    table: pa.Table
    truncated: bool
    suppressed: list[dict[str, Any]] = field(default_factory=list)


def execute(
    plan: Plan, *, max_rows: int = DEFAULT_MAX_ROWS, timeout: float = DEFAULT_TIMEOUT_SECONDS
) -> QueryOutput:
    """Read the views' columns (decrypted in memory), run the SQL, protect aggregate cells."""
    return run_plan(plan, load_sources(plan), max_rows=max_rows, timeout=timeout)


def load_sources(plan: Plan) -> dict[str, ArrowSource]:
    """Each view's stored columns as Arrow, in memory (DuckDB never gets a storage path)."""
    return {name: view.reader(view.read_columns()) for name, view in plan.sources.items()}


def run_plan(
    plan: Plan,
    sources: dict[str, ArrowSource],
    *,
    max_rows: int = DEFAULT_MAX_ROWS,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> QueryOutput:
    fetched = sandbox().fetch(plan.sql, sources, max_rows=max_rows, timeout=timeout)
    if plan.aggregate is None:
        return QueryOutput(fetched.table, fetched.truncated)
    return protect_aggregate(fetched.table, plan.aggregate, truncated=fetched.truncated)


def protect_aggregate(table: pa.Table, plan: AggregatePlan, *, truncated: bool) -> QueryOutput:
    """Suppress small cells (and their complements), perturb the rest, drop hidden columns."""
    visible = table.num_columns - 2
    names = table.column_names[:visible]
    rows = table.to_pylist()
    cells = [
        Cell(
            keys=tuple(row[names[p]] for p in plan.key_positions),
            count=int(row[table.column_names[visible]]),
            cell_key=int(row[table.column_names[visible + 1]] or 0),
        )
        for row in rows
    ]
    suppress(cells, min_cell=plan.min_cell)
    columns: list[list[Any]] = [[row[name] for row in rows] for name in names]
    suppressed: list[dict[str, Any]] = []
    for index, cell in enumerate(cells):
        value = (
            None if cell.suppressed else released_count(cell.count, cell.cell_key, plan.min_cell)
        )
        for position in plan.count_positions:
            columns[position][index] = value
        if cell.suppressed:
            where = {names[p]: cell.keys[i] for i, p in enumerate(plan.key_positions)}
            suppressed.append({"cell": where, "reason": cell.suppressed})
    arrays = [
        pa.array(columns[p], type=pa.int64()) if p in plan.count_positions else table.column(p)
        for p in range(visible)
    ]
    return QueryOutput(pa.table(arrays, names=names), truncated, suppressed)
