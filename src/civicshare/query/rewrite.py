"""Rewriting a parsed query onto policy views.

Every dataset reference becomes a subquery over the dataset's policy view (granted columns,
treated, filtered), keeping the user's alias, so ``*``, ``COLUMNS(...)``, ``to_json(t)`` and
the like can only ever see what the agreement grants. A column that exists in the provider's
dataset but is not granted is refused up front with a 403 naming it and the agreement.
Aggregate-only sources get a stricter shape (see ``aggregate_plan``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from sqlglot import exp

from civicshare.errors import Forbidden
from civicshare.policy.view import RECORD_KEY, PolicyView
from civicshare.query.memo import Memo
from civicshare.query.parse import ParsedQuery, TableRef, dataset_tables, table_ref
from civicshare.query.regroup import plan_regrouped

# Rewritten queries remembered (see ``plan_query``), when their SQL is at most this long: a
# view excluding many objections carries every hash in its key and its SQL, and 256 of those
# would hold a lot of memory for a rewrite that costs little next to such a query.
PLAN_MEMO_SIZE = 256
PLAN_MEMO_MAX_CHARS = 50_000
COUNT_COLUMN = "__cs_n"
CELL_KEY_COLUMN = "__cs_ck"
_KEY_LITERAL = re.compile(r"unhex\('[0-9a-f]{128}'\)")
_SALT = re.compile(r"hash\(\d+, ")


@dataclass(frozen=True)
class Magnitude:
    """A released ``sum(column)`` or ``avg(column)`` of an aggregate-only query.

    Its hidden columns (after the count and cell key) hold, per cell, the column's non-null
    count, true sum, largest absolute value and sum of absolute values, in that order.
    """

    position: int
    kind: str  # "sum" | "avg"
    column: str
    integer: bool  # an integer sum is released rounded, as an integer


MAGNITUDE_HIDDEN = 4


@dataclass
class AggregatePlan:
    """Which output columns are group keys, counts or sums/averages, and the disclosure rule."""

    key_positions: list[int]
    count_positions: list[int]
    min_cell: int
    magnitudes: list[Magnitude] = field(default_factory=list)

    @property
    def hidden(self) -> int:
        """How many hidden columns follow the visible ones."""
        return 2 + MAGNITUDE_HIDDEN * len(self.magnitudes)


@dataclass
class Plan:
    parsed: ParsedQuery
    sql: str
    sources: dict[str, PolicyView]
    views: list[PolicyView]
    aggregate: AggregatePlan | None = None
    notes: list[str] = field(default_factory=list)
    # Set when ``sql`` groups before treating (query/regroup.py): the plain policy-view SQL,
    # whose output names and types the engine checks ``sql`` against before running it.
    reference_sql: str | None = None

    @property
    def display_sql(self) -> str:
        """The executed SQL with keys and salts elided."""
        return _SALT.sub("hash(<salt>, ", _KEY_LITERAL.sub("unhex('<key>')", self.sql))

    def explain(self) -> dict[str, Any]:
        return {
            "query_sha256": self.parsed.sha256,
            "datasets": [view.explain() for view in self.views],
            "aggregate_only": self.aggregate is not None,
            "rewritten_sql": self.display_sql,
        }


def source_name(index: int) -> str:
    return f"__cs_src_{index}"


def plan_query(
    parsed: ParsedQuery, views: Mapping[TableRef, PolicyView], *, regroup: bool = True
) -> Plan:
    """Check columns against the views and produce the SQL DuckDB will run.

    ``regroup=False`` skips planning the grouping-first form (query/regroup.py), which the
    engine would not run on small sources anyway.

    The SQL is a pure function of the query text and each view's ``sql_key`` (columns,
    treatments, row filter, objections, keys, schema...), so it is remembered under exactly
    those: the next query reads the agreement and objections afresh, and any change to them
    gives a new key. Refusals are not remembered.
    """
    order = parsed.refs
    sources = {source_name(index): views[ref] for index, ref in enumerate(order)}
    ordered_views = [views[ref] for ref in order]
    key = (parsed.sql, regroup, tuple((ref, views[ref].sql_key()) for ref in order))
    rendered = _PLANS.get(key)
    if rendered is None:
        rendered = _render(parsed, views, regroup=regroup)
        if len(rendered.sql) + len(rendered.reference_sql or "") <= PLAN_MEMO_MAX_CHARS:
            _PLANS.put(key, rendered)
    return Plan(
        parsed,
        rendered.sql,
        sources,
        ordered_views,
        rendered.aggregate,
        reference_sql=rendered.reference_sql,
    )


@dataclass(frozen=True)
class _Rendered:
    sql: str
    aggregate: AggregatePlan | None = None
    reference_sql: str | None = None


_PLANS: Memo[_Rendered] = Memo(PLAN_MEMO_SIZE)


def _render(
    parsed: ParsedQuery, views: Mapping[TableRef, PolicyView], *, regroup: bool
) -> _Rendered:
    statement = parsed.statement.copy()
    tables = dataset_tables(statement)
    order = list(dict.fromkeys(table_ref(table) for table in tables))
    assert order == parsed.refs  # the sources are named by position in ``parsed.refs``
    names = {ref: source_name(index) for index, ref in enumerate(order)}
    placed = [(table, views[table_ref(table)]) for table in tables]
    check_columns(statement, placed)
    if any(view.aggregate_only for _, view in placed):
        sql, aggregate, regrouped = aggregate_plan(statement, placed, names, regroup=regroup)
        if regrouped is None:
            return _Rendered(sql, aggregate)
        return _Rendered(regrouped, aggregate, reference_sql=sql)
    regrouped = _regrouped(statement, placed, names, record_key=False) if regroup else None
    for index, (table, _view) in enumerate(placed):
        table.replace(_placeholder(table, index))
    sql = statement.sql(dialect="duckdb", copy=False)  # our own copy, not used again
    for index, (table, view) in enumerate(placed):
        subquery = "(" + view.select_sql(names[table_ref(table)]) + ")"
        sql = _substitute(sql, index, subquery)
    if regrouped is None:
        return _Rendered(sql)
    return _Rendered(regrouped, reference_sql=sql)


def _regrouped(
    statement: exp.Query,
    placed: list[tuple[exp.Table, PolicyView]],
    names: Mapping[TableRef, str],
    *,
    record_key: bool,
) -> str | None:
    """The grouping-first form of a one-dataset GROUP BY query, when provably the same."""
    if len(placed) != 1 or not isinstance(statement, exp.Select):
        return None
    table, view = placed[0]
    source = names[table_ref(table)]

    def subquery(raw: Sequence[tuple[str, str]]) -> str:
        return view.select_sql(source, record_key=record_key, raw=raw)

    return plan_regrouped(statement, table, view, subquery, record_key=record_key)


def _placeholder(table: exp.Table, index: int) -> exp.Table:
    alias = table.args.get("alias")
    if alias is None:
        alias = exp.TableAlias(this=exp.to_identifier(table.name))
    return exp.Table(this=exp.to_identifier(f"__cs_pv_{index}"), alias=alias.copy())


def _substitute(sql: str, index: int, subquery: str) -> str:
    pattern = re.compile(rf'"?__cs_pv_{index}"?(?![0-9])')
    return pattern.sub(lambda _match: subquery, sql)


def check_columns(statement: exp.Expr, placed: list[tuple[exp.Table, PolicyView]]) -> None:
    """Refuse a query that names a column of a dataset that its policy does not grant."""
    by_alias = {table.alias_or_name.lower(): view for table, view in placed}
    everywhere = [view for _, view in placed]
    for column in statement.find_all(exp.Column):
        if isinstance(column.this, exp.Star):
            continue
        name = column.name.lower()
        qualifier = column.table.lower()
        if qualifier:
            if qualifier not in by_alias:
                continue
            candidates = [by_alias[qualifier]]
        else:
            candidates = everywhere
        if any(name in view.granted for view in candidates):
            continue
        for view in candidates:
            if name in view.provider_columns:
                raise _not_granted(name, view)


def _not_granted(name: str, view: PolicyView) -> Forbidden:
    by = f"agreement {view.agreement_id}" if view.agreement_id else f"{view.access} access"
    return Forbidden(
        f"column '{name}' of {view.ref} is not granted by {by}",
        code="column_not_granted",
        details={"column": name, "dataset": view.ref, "agreement": view.agreement_id},
    )


# ---------------------------------------------------------------------------- aggregate-only


def _refuse(message: str) -> Forbidden:
    return Forbidden(message, code="aggregate_only")


def aggregate_plan(
    statement: exp.Query,
    placed: list[tuple[exp.Table, PolicyView]],
    names: Mapping[TableRef, str],
    *,
    regroup: bool = True,
) -> tuple[str, AggregatePlan, str | None]:
    """Check an aggregate-only query's shape and add the hidden count and cell-key columns.

    Allowed: ``SELECT <group keys>, count(*) FROM agency.dataset [WHERE ...] GROUP BY <keys>
    [ORDER BY <keys>]``. Refused: row-level output, ``*``, other aggregates, joins, subqueries,
    CTEs, set operations, HAVING, LIMIT/OFFSET, windows, DISTINCT, ROLLUP/CUBE.
    Returns the plain SQL, the plan, and the grouping-first SQL when one applies.
    """
    view = next(view for _, view in placed if view.aggregate_only)
    if len(placed) != 1 or not isinstance(statement, exp.Select):
        raise _refuse(f"{view.ref} is aggregate-only: query it alone, in one plain SELECT")
    _check_aggregate_shape(statement, view)
    keys = _group_keys(statement)
    key_positions, count_positions, magnitudes = _classify_outputs(statement, keys, view)
    _check_order(statement, keys)
    table = placed[0][0]
    statement.append("expressions", exp.alias_(exp.Count(this=exp.Star()), COUNT_COLUMN))
    cell_key = exp.Sum(this=exp.column(RECORD_KEY))
    statement.append("expressions", exp.alias_(cell_key, CELL_KEY_COLUMN))
    for index, magnitude in enumerate(magnitudes):
        for part, node in enumerate(_magnitude_parts(magnitude.column)):
            statement.append("expressions", exp.alias_(node, f"__cs_m{index}_{part}"))
    regrouped = _regrouped(statement, placed, names, record_key=True) if regroup else None
    table.replace(_placeholder(table, 0))
    subquery = "(" + view.select_sql(names[table_ref(table)], record_key=True) + ")"
    sql = _substitute(statement.sql(dialect="duckdb", copy=False), 0, subquery)
    released = AggregatePlan(key_positions, count_positions, view.min_cell, magnitudes)
    return sql, released, regrouped


def _magnitude_parts(column: str) -> list[exp.Expr]:
    """Per cell: non-null count, sum, largest |value|, sum of |values| (see ``Magnitude``)."""

    def col() -> exp.Column:
        return exp.column(column, quoted=True)

    return [
        exp.Count(this=col()),
        exp.Sum(this=col()),
        exp.Max(this=exp.Abs(this=col())),
        exp.Sum(this=exp.Abs(this=col())),
    ]


_NOT_IN_AGGREGATE = {
    "limit": "LIMIT",
    "offset": "OFFSET",
    "having": "HAVING",
    "qualify": "QUALIFY",
    "distinct": "DISTINCT",
    "joins": "joins",
    "laterals": "LATERAL",
    "with_": "WITH",
    "windows": "WINDOW",
    "sample": "sampling",
    "pivots": "PIVOT",
}


def _check_aggregate_shape(statement: exp.Select, view: PolicyView) -> None:
    for arg, label in _NOT_IN_AGGREGATE.items():
        if statement.args.get(arg):
            raise _refuse(f"{view.ref} is aggregate-only: {label} is not allowed")
    forbidden = (exp.Star, exp.Subquery, exp.Window, exp.Columns, exp.Lateral, exp.Query)
    for node in statement.walk():
        if node is statement or (isinstance(node, exp.Star) and _is_count_star(node.parent)):
            continue
        if isinstance(node, forbidden):
            raise _refuse(
                f"{view.ref} is aggregate-only: only grouped counts of its columns are allowed"
            )
    group = statement.args.get("group")
    if group is not None and any(group.args.get(k) for k in ("rollup", "cube", "grouping_sets")):
        raise _refuse(f"{view.ref} is aggregate-only: ROLLUP, CUBE and GROUPING SETS are refused")
    where = statement.args.get("where")
    if where is not None and any(True for _ in where.find_all(exp.AggFunc)):
        raise _refuse("aggregates are not allowed in WHERE")


def _group_keys(statement: exp.Select) -> list[str]:
    """The GROUP BY items as SQL text, ordinals and aliases resolved to their expressions."""
    group = statement.args.get("group")
    if group is None:
        return []
    projections = statement.expressions
    aliases = {p.alias.lower(): p.unalias() for p in projections if p.alias}
    keys = []
    for item in group.expressions:
        target = item
        if isinstance(item, exp.Literal) and not item.is_string and item.name.isdigit():
            position = int(item.name) - 1
            if not 0 <= position < len(projections):
                raise _refuse("GROUP BY position out of range")
            target = projections[position].unalias()
        elif isinstance(item, exp.Column) and not item.table and item.name.lower() in aliases:
            target = aliases[item.name.lower()]
        keys.append(target.sql(dialect="duckdb"))
    return keys


def _is_count_star(node: exp.Expr | None) -> bool:
    if not isinstance(node, exp.Count) or node.args.get("distinct"):
        return False
    inner = node.this
    return isinstance(inner, exp.Star) or (isinstance(inner, exp.Literal) and not inner.is_string)


def _classify_outputs(
    statement: exp.Select, keys: list[str], view: PolicyView
) -> tuple[list[int], list[int], list[Magnitude]]:
    key_positions, count_positions = [], []
    magnitudes: list[Magnitude] = []
    released: set[int] = set()
    for position, projection in enumerate(statement.expressions):
        inner = projection.unalias()
        if _is_count_star(inner):
            count_positions.append(position)
            released.add(id(inner))
        elif isinstance(inner, exp.Sum | exp.Avg):
            magnitudes.append(_magnitude(inner, position, view))
            released.add(id(inner))
        elif inner.sql(dialect="duckdb") in keys and not any(
            True for _ in inner.find_all(exp.AggFunc)
        ):
            key_positions.append(position)
        else:
            _refuse_aggregate(inner, view)
            raise _refuse(
                f"{view.ref} is aggregate-only: output only GROUP BY keys, count(*), "
                f"sum(column) and avg(column) ('{projection.sql(dialect='duckdb')[:80]}' is "
                "none of them)"
            )
    if not count_positions and not magnitudes:
        raise _refuse(f"{view.ref} is aggregate-only: the query must output count(*)")
    for node in statement.find_all(exp.AggFunc):
        if id(node) not in released:
            _refuse_aggregate(node, view)
            raise _refuse(f"{view.ref} is aggregate-only: aggregates must be whole output columns")
    return key_positions, count_positions, magnitudes


def _refuse_aggregate(node: exp.Expr, view: PolicyView) -> None:
    """Name the aggregate that is refused, and why, when ``node`` holds one."""
    for found in [node, *node.find_all(exp.AggFunc)]:
        if isinstance(found, exp.Min | exp.Max | exp.ArgMax | exp.ArgMin):
            raise _refuse(
                f"{view.ref} is aggregate-only: min() and max() reveal one person's value "
                "and are not released"
            )
        other = isinstance(found, exp.AggFunc) and not isinstance(found, exp.Sum | exp.Avg)
        if other and not _is_count_star(found):
            raise _refuse(
                f"{view.ref} is aggregate-only: only count(*), sum(column) and "
                "avg(column) are released"
            )


def _magnitude(node: exp.Sum | exp.Avg, position: int, view: PolicyView) -> Magnitude:
    """``sum(col)`` / ``avg(col)`` of one granted numeric column (treated as clear or banded
    by width), released with small-cell and dominance suppression and noise (disclosure.py)."""
    kind = "sum" if isinstance(node, exp.Sum) else "avg"
    argument = node.this
    extra = [key for key, value in node.args.items() if value and key != "this"]
    if extra or not isinstance(argument, exp.Column) or argument.name.lower() not in view.granted:
        raise _refuse(
            f"{view.ref} is aggregate-only: {kind}() takes one granted column, as it is "
            "(no DISTINCT, FILTER or expressions)"
        )
    column = view.granted[argument.name.lower()]
    stored = view.stored_type(column.name)
    numeric = (
        pa.types.is_integer(stored) or pa.types.is_floating(stored) or pa.types.is_decimal(stored)
    )
    treatment = column.treatment
    if not numeric or not (treatment.is_clear or treatment.width is not None):
        raise _refuse(
            f"{view.ref} is aggregate-only: {kind}() needs a numeric column granted clear "
            f"or generalise(width=N); '{column.name}' is not"
        )
    whole = treatment.is_clear or float(treatment.width or 0).is_integer()
    integer = kind == "sum" and bool(pa.types.is_integer(stored)) and whole
    return Magnitude(position, kind, column.name, integer)


def _check_order(statement: exp.Select, keys: list[str]) -> None:
    order = statement.args.get("order")
    if order is None:
        return
    projections = statement.expressions
    aliases = {p.alias.lower(): p.unalias().sql(dialect="duckdb") for p in projections if p.alias}
    for ordered in order.expressions:
        target = ordered.this
        text = target.sql(dialect="duckdb")
        if isinstance(target, exp.Literal) and not target.is_string and target.name.isdigit():
            position = int(target.name) - 1
            text = (
                projections[position].unalias().sql(dialect="duckdb")
                if 0 <= position < len(projections)
                else ""
            )
        elif isinstance(target, exp.Column) and not target.table:
            text = aliases.get(target.name.lower(), text)
        if text not in keys:
            raise _refuse("aggregate-only results may be ordered by their group keys only")
