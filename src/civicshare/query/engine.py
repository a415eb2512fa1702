"""Executing a plan in the sandbox and applying disclosure control to aggregate-only results."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from civicshare.query.disclosure import (
    Cell,
    magnitude_suppression,
    released_count,
    released_magnitude,
    suppress,
)
from civicshare.query.rewrite import MAGNITUDE_HIDDEN, AggregatePlan, Magnitude, Plan
from civicshare.query.sandbox import DEFAULT_TIMEOUT_SECONDS, ArrowSource, sandbox

DEFAULT_MAX_ROWS = 10_000
HARD_MAX_ROWS = 1_000_000
# Below this many source rows the plain policy-view plan runs even when a grouping-first
# plan exists (query/regroup.py): on a few thousand rows the treatments are cheap, and the
# grouping-first plan's second bind costs more than it saves (~2 ms vs ~4 ms on 200 rows).
REGROUP_MIN_ROWS = 100_000
# Below this many source rows the query runs on the one-thread sandbox (see ``sandbox``).
SMALL_SOURCE_ROWS = 100_000


@dataclass
class QueryOutput:
    table: pa.Table
    truncated: bool
    suppressed: list[dict[str, Any]] = field(default_factory=list)


def execute(
    plan: Plan,
    *,
    max_rows: int = DEFAULT_MAX_ROWS,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    regroup_min_rows: int = REGROUP_MIN_ROWS,
) -> QueryOutput:
    """Read the views' columns (decrypted in memory), run the SQL, protect aggregate cells."""
    sources = load_sources(plan)
    return run_plan(
        plan, sources, max_rows=max_rows, timeout=timeout, regroup_min_rows=regroup_min_rows
    )


def load_sources(plan: Plan) -> dict[str, ArrowSource]:
    """Each view's stored columns as Arrow, in memory (DuckDB never gets a storage path)."""
    return {name: view.reader(view.read_columns()) for name, view in plan.sources.items()}


def run_plan(
    plan: Plan,
    sources: dict[str, ArrowSource],
    *,
    max_rows: int = DEFAULT_MAX_ROWS,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    regroup_min_rows: int = REGROUP_MIN_ROWS,
) -> QueryOutput:
    sql, reference = plan.sql, plan.reference_sql
    rows = _known_rows(sources)
    if reference is not None and rows < regroup_min_rows:
        # Small sources: treating every row costs less than binding two plans.
        sql, reference = reference, None
    box = sandbox(threads=1) if rows < SMALL_SOURCE_ROWS else sandbox()
    fetched = box.fetch(sql, sources, max_rows=max_rows, timeout=timeout, reference_sql=reference)
    if plan.aggregate is None:
        return QueryOutput(fetched.table, fetched.truncated)
    return protect_aggregate(fetched.table, plan.aggregate, truncated=fetched.truncated)


def _known_rows(sources: dict[str, ArrowSource]) -> int:
    """Rows in the sources (a stream of unknown length counts as large)."""
    total = 0
    for source in sources.values():
        if not isinstance(source, pa.Table):
            return max(REGROUP_MIN_ROWS, SMALL_SOURCE_ROWS)
        total += source.num_rows
    return total


def protect_aggregate(table: pa.Table, plan: AggregatePlan, *, truncated: bool) -> QueryOutput:
    """Suppress small cells (and their complements), perturb the rest, drop hidden columns."""
    visible = table.num_columns - plan.hidden
    names = table.column_names[:visible]
    rows = [list(row) for row in zip(*(c.to_pylist() for c in table.columns), strict=True)]
    cells = [
        Cell(
            keys=tuple(row[p] for p in plan.key_positions),
            count=int(row[visible]),
            cell_key=int(row[visible + 1] or 0),
        )
        for row in rows
    ]
    suppress(cells, min_cell=plan.min_cell)
    columns: list[list[Any]] = [[row[p] for row in rows] for p in range(visible)]
    suppressed: list[dict[str, Any]] = []
    for index, cell in enumerate(cells):
        value = (
            None if cell.suppressed else released_count(cell.count, cell.cell_key, plan.min_cell)
        )
        for position in plan.count_positions:
            columns[position][index] = value
        where = {names[p]: cell.keys[i] for i, p in enumerate(plan.key_positions)}
        if cell.suppressed:
            suppressed.append({"cell": where, "reason": cell.suppressed})
        for number, magnitude in enumerate(plan.magnitudes):
            hidden = rows[index][visible + 2 + MAGNITUDE_HIDDEN * number :]
            released, reason = _magnitude_value(cell, magnitude, hidden, plan.min_cell)
            columns[magnitude.position][index] = released
            if reason is not None:
                suppressed.append({"cell": where, "column": names[magnitude.position],
                                   "reason": reason})  # fmt: skip
    arrays = [_released_array(p, columns[p], table, plan) for p in range(visible)]
    return QueryOutput(pa.table(arrays, names=names), truncated, suppressed)


def _magnitude_value(
    cell: Cell, magnitude: Magnitude, hidden: list[Any], min_cell: int
) -> tuple[float | int | None, str | None]:
    """A cell's released sum or average, or None and why not (None: the cell is suppressed)."""
    if cell.suppressed:
        return None, None
    nonnull, total, largest, spread = hidden[:MAGNITUDE_HIDDEN]
    reason = magnitude_suppression(
        nonnull=int(nonnull),
        largest=None if largest is None else float(largest),
        total_magnitude=None if spread is None else float(spread),
        min_cell=min_cell,
    )
    if reason is not None:
        return None, reason
    value = released_magnitude(total, largest, cell.cell_key, magnitude.column)
    if magnitude.kind == "avg":
        return value / released_count(int(nonnull), cell.cell_key, min_cell), None
    return (round(value) if magnitude.integer else value), None


def _released_array(position: int, values: list[Any], table: pa.Table, plan: AggregatePlan) -> Any:
    if position in plan.count_positions:
        return pa.array(values, type=pa.int64())
    for magnitude in plan.magnitudes:
        if magnitude.position == position:
            return pa.array(values, type=pa.int64() if magnitude.integer else pa.float64())
    return table.column(position)
