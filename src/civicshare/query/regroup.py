"""Grouping before treatment: the same result as the policy view, with far fewer treatments.

``SELECT zip, count(*) FROM agency.dataset GROUP BY zip`` over a view that masks ``zip``
computes the masked value for every row and then groups. When the treatment is a function of
the stored value alone (every treatment is: ``Treatment.is_value_function``), the query can
instead group by the stored value, and treat the far fewer group keys afterwards:

    SELECT T(k) AS zip, CAST(sum(a) AS BIGINT) AS n
    FROM (SELECT "zip" AS k, count(*) AS a FROM <view + stored zip> WHERE ... GROUP BY k)
    GROUP BY T(k)

Two stored values with the same treated value (94110 and 94112 both give ``941**``) fall
into one outer group, so the inner partial aggregates are combined again. That is only exact
for aggregates whose partial results combine: ``count`` (summed), ``sum`` of integers and
decimals (summed; floating-point sums would depend on the order of additions), ``min`` and
``max``. It is only exact if equal stored values are exactly the values DuckDB puts in one
group, which holds for integers, decimals, text, dates, timestamps and booleans (not floats:
-0.0 and 0.0 group together but print differently; not intervals). Everything else —
``avg``, ``DISTINCT``, ``FILTER``, ``HAVING``, ``LIMIT``, joins, subqueries, windows, stars,
expressions as keys — keeps the plain policy-view plan. ``plan_regrouped`` returns ``None``
for those, and the engine binds both forms and runs the plain one if their column types
differ (``Sandbox.fetch``), so the rewrite can only ever change speed.

The stored key columns travel under internal names (``__cs_k0``...) that user SQL cannot
name (reserved prefix), and the rewrite is refused when anything in the query could reach
columns without naming them (``*``, ``COLUMNS``, ``#1``, the table alias as a row value).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pyarrow as pa
from sqlglot import exp

from civicshare.policy.view import RECORD_KEY, GrantedColumn, PolicyView

KEY_PREFIX = "__cs_k"
PARTIAL_PREFIX = "__cs_a"
OUTPUT_PREFIX = "__cs_o"
_PLACEHOLDER = re.compile(r'"?__cs_pv_0"?(?![0-9])')
_ALLOWED_ARGS = frozenset({"expressions", "from_", "where", "group", "order"})
# Nodes through which an expression could see columns it does not name.
_OPAQUE = (
    exp.Star,
    exp.Columns,
    exp.PositionalColumn,
    exp.Query,
    exp.Subquery,
    exp.Window,
    exp.Lambda,
    exp.Placeholder,
    exp.Parameter,
)
# How a partial aggregate is combined in the outer query.
_COMBINE: dict[type[exp.Expr], str] = {
    exp.Count: "count",
    exp.Sum: "sum",
    exp.Min: "min",
    exp.Max: "max",
}


def groupable_type(arrow_type: pa.DataType) -> bool:
    """Types whose DuckDB grouping equality is identity of the value (see module docstring)."""
    checks = (
        pa.types.is_integer,
        pa.types.is_string,
        pa.types.is_large_string,
        pa.types.is_date,
        pa.types.is_timestamp,
        pa.types.is_boolean,
        pa.types.is_decimal,
    )
    return any(check(arrow_type) for check in checks)


def _exactly_summable(arrow_type: pa.DataType) -> bool:
    return bool(pa.types.is_integer(arrow_type) or pa.types.is_decimal(arrow_type))


@dataclass(frozen=True)
class _Output:
    key: int | None = None  # index into the keys, or
    partial: int | None = None  # index into the partial aggregates
    combine: str = ""


def plan_regrouped(
    statement: exp.Select,
    table: exp.Table,
    view: PolicyView,
    subquery: Callable[[Sequence[tuple[str, str]]], str],
    *,
    record_key: bool = False,
) -> str | None:
    """The grouping-first SQL for ``statement`` over ``view``, or None when not provably equal.

    ``subquery(raw)`` renders the view's subquery with the stored columns ``raw`` added
    (pairs of stored name and internal alias). ``record_key`` admits ``sum(__cs_rkey)``,
    the aggregate-only cell key.
    """
    shape = _Shape(statement, table, view, record_key)
    if not shape.supported():
        return None
    keys = shape.keys()
    if keys is None or all(column.treatment.is_clear for column in keys):
        return None
    outputs = shape.outputs(keys)
    order = shape.order(outputs) if outputs is not None else None
    if outputs is None or order is None:
        return None
    return _render(statement, table, view, subquery, keys, outputs, order)


class _Shape:
    """Checks of one SELECT against what the rewrite can prove equal."""

    def __init__(
        self, statement: exp.Select, table: exp.Table, view: PolicyView, record_key: bool
    ) -> None:
        self.statement = statement
        self.table = table
        self.view = view
        self.alias = table.alias_or_name.lower()
        self.granted = view.granted
        self.record_key = record_key

    def supported(self) -> bool:
        statement = self.statement
        if any(value and key not in _ALLOWED_ARGS for key, value in statement.args.items()):
            return False
        source = statement.args.get("from_")
        if source is None or source.this is not self.table or self.alias in self.granted:
            return False
        group = statement.args.get("group")
        if not isinstance(group, exp.Group) or set(_set_args(group)) != {"expressions"}:
            return False
        for node in statement.walk():
            if node is statement:
                continue
            if isinstance(node, _OPAQUE) and not _is_count_star_arg(node):
                return False
            if isinstance(node, exp.Column) and not self._plain_column(node):
                return False
        where = statement.args.get("where")
        return where is None or not any(True for _ in where.find_all(exp.AggFunc))

    def _plain_column(self, column: exp.Column) -> bool:
        """A granted column of the one table, named directly."""
        if column.table and column.table.lower() != self.alias:
            return False
        if column.args.get("db") or column.args.get("catalog"):
            return False
        name = column.name.lower()
        return name in self.granted or (self.record_key and name == RECORD_KEY)

    def keys(self) -> list[GrantedColumn] | None:
        """The grouped columns (each once), or None if a key is not a plain groupable column."""
        projections = self.statement.expressions
        keys: list[GrantedColumn] = []
        group = self.statement.args["group"]
        for item in group.expressions:
            target = item
            if isinstance(item, exp.Literal) and not item.is_string and item.name.isdigit():
                position = int(item.name) - 1
                if not 0 <= position < len(projections):
                    return None
                target = projections[position].unalias()
            if not isinstance(target, exp.Column) or target.name.lower() not in self.granted:
                return None
            column = self.granted[target.name.lower()]
            if not column.treatment.is_value_function:
                return None
            if not groupable_type(self.view.stored_type(column.name)):
                return None
            if column not in keys:
                keys.append(column)
        return keys or None

    def outputs(self, keys: list[GrantedColumn]) -> list[_Output] | None:
        names = [key.name.lower() for key in keys]
        outputs: list[_Output] = []
        partial = 0
        for projection in self.statement.expressions:
            inner = projection.unalias()
            alias = projection.alias.lower() if projection.alias else ""
            if isinstance(inner, exp.Column):
                name = inner.name.lower()
                # An alias that is another column's name makes GROUP/ORDER BY ambiguous.
                if name not in names or (alias and alias != name and alias in self.granted):
                    return None
                outputs.append(_Output(key=names.index(name)))
                continue
            combine = self._combinable(inner)
            if combine is None or (alias and alias in self.granted):
                return None
            outputs.append(_Output(partial=partial, combine=combine))
            partial += 1
        return outputs

    def _combinable(self, node: exp.Expr) -> str | None:
        combine = _COMBINE.get(type(node))
        if combine is None or set(_set_args(node)) - {"this", "big_int"}:
            return None
        argument = node.this
        if isinstance(argument, exp.Distinct) or any(
            True for _ in argument.find_all(exp.AggFunc, exp.Window)
        ):
            return None
        if combine == "sum" and not self._exact_sum_argument(argument):
            return None
        return combine

    def _exact_sum_argument(self, argument: exp.Expr) -> bool:
        """A column whose treated values are integers or decimals (sums combine exactly)."""
        if not isinstance(argument, exp.Column):
            return False
        name = argument.name.lower()
        if self.record_key and name == RECORD_KEY:
            return True
        column = self.granted.get(name)
        if column is None:
            return False
        stored = self.view.stored_type(column.name)
        treatment = column.treatment
        if treatment.is_clear:
            return _exactly_summable(stored)
        # generalise(width=10) of an integer column stays an integer (BIGINT); any other
        # width, or a decimal column, goes through floor() of a DOUBLE.
        return (
            treatment.kind == "generalise"
            and treatment.width is not None
            and float(treatment.width).is_integer()
            and pa.types.is_integer(stored)
        )

    def order(self, outputs: list[_Output]) -> list[exp.Ordered] | None:
        """ORDER BY items as output positions (ordinals or output names), or None."""
        order = self.statement.args.get("order")
        if order is None:
            return []
        names = _output_names(self.statement)
        ordered: list[exp.Ordered] = []
        for item in order.expressions:
            target = item.this
            position = -1
            if isinstance(target, exp.Literal) and not target.is_string and target.name.isdigit():
                position = int(target.name) - 1
            elif isinstance(target, exp.Column) and not target.table:
                matches = [i for i, name in enumerate(names) if name == target.name.lower()]
                position = matches[0] if len(matches) == 1 else -1
            if not 0 <= position < len(outputs):
                return None
            copy = item.copy()
            copy.set("this", exp.Literal.number(position + 1))
            ordered.append(copy)
        return ordered


def _set_args(node: exp.Expr) -> list[str]:
    return [key for key, value in node.args.items() if value]


def _is_count_star_arg(node: exp.Expr) -> bool:
    parent = node.parent
    return (
        isinstance(node, exp.Star)
        and isinstance(parent, exp.Count)
        and not parent.args.get("distinct")
        and parent.this is node
    )


def _output_names(statement: exp.Select) -> list[str]:
    return [
        (p.alias or (p.name if isinstance(p, exp.Column) else "")).lower()
        for p in statement.expressions
    ]


def _render(
    statement: exp.Select,
    table: exp.Table,
    view: PolicyView,
    subquery: Callable[[Sequence[tuple[str, str]]], str],
    keys: list[GrantedColumn],
    outputs: list[_Output],
    order: list[exp.Ordered],
) -> str:
    key_names = [f"{KEY_PREFIX}{index}" for index in range(len(keys))]
    partials = [
        projection.unalias().copy()
        for projection, output in zip(statement.expressions, outputs, strict=True)
        if output.partial is not None
    ]
    # Nodes, not strings: the builder would parse every string with the SQL parser.
    inner = exp.Select(
        expressions=[exp.column(name) for name in key_names]
        + [exp.alias_(node, f"{PARTIAL_PREFIX}{i}") for i, node in enumerate(partials)]
    )
    placeholder = exp.Table(
        this=exp.to_identifier("__cs_pv_0"),
        alias=exp.TableAlias(this=exp.to_identifier(table.alias_or_name)),
    )
    inner.set("from_", exp.From(this=placeholder))
    where = statement.args.get("where")
    if where is not None:
        inner.set("where", where.copy())
    inner.set("group", exp.Group(expressions=[exp.column(name) for name in key_names]))
    treated = [view.treated_sql(key, name) for key, name in zip(keys, key_names, strict=True)]
    items = []
    for index, output in enumerate(outputs):
        expression = treated[output.key] if output.key is not None else _combined(output)
        items.append(f"{expression} AS {OUTPUT_PREFIX}{index}")
    raw = [(key.name, name) for key, name in zip(keys, key_names, strict=True)]
    view_sql = "(" + subquery(raw) + ")"
    inner_sql = _PLACEHOLDER.sub(lambda _match: view_sql, inner.sql(dialect="duckdb"), count=1)
    sql = f"SELECT {', '.join(items)} FROM ({inner_sql}) AS __cs_g GROUP BY {', '.join(treated)}"
    if order:
        sql += " ORDER BY " + ", ".join(item.sql(dialect="duckdb") for item in order)
    return sql


def _combined(output: _Output) -> str:
    partial = f"{PARTIAL_PREFIX}{output.partial}"
    if output.combine == "count":
        # count's own type is BIGINT; a sum of BIGINTs would be HUGEINT.
        return f"CAST(sum({partial}) AS BIGINT)"
    return f"{output.combine}({partial})"
