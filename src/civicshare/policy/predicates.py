"""Row filters of agreements: a single predicate over the provider's columns, checked once."""

from __future__ import annotations

import functools
from collections.abc import Iterable

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from civicshare.errors import Invalid
from civicshare.query.functions import SCALARS

MAX_FILTER_CHARS = 4_000


def validate_row_filter(predicate: str, columns: Iterable[str]) -> str:
    """Return the filter in canonical DuckDB SQL, or raise ``Invalid`` saying what is wrong.

    Only the provider's columns, literals, operators and allow-listed scalar functions may
    appear: no subqueries, tables, aggregates or windows.
    """
    if not predicate.strip() or len(predicate) > MAX_FILTER_CHARS:
        raise Invalid("a row filter is a non-empty predicate", code="invalid_row_filter")
    try:
        statements = sqlglot.parse(f"SELECT 1 FROM t WHERE {predicate}", dialect="duckdb")
    except (ParseError, TokenError):
        raise Invalid(
            "the row filter is not a valid SQL predicate", code="invalid_row_filter"
        ) from None
    select = statements[0] if len(statements) == 1 else None
    if not isinstance(select, exp.Select) or {
        key for key, value in select.args.items() if value
    } - {"expressions", "from_", "where"}:
        raise Invalid("the row filter must be a single predicate", code="invalid_row_filter")
    where = select.args.get("where")
    if not isinstance(where, exp.Where) or select.args.get("from_") is None:
        raise Invalid("the row filter must be a single predicate", code="invalid_row_filter")
    condition = where.this
    known = {name.lower() for name in columns}
    for node in condition.walk():
        _check_node(node, known)
    return str(condition.sql(dialect="duckdb"))


def _check_node(node: exp.Expr, known: set[str]) -> None:
    if isinstance(node, exp.Query | exp.Subquery | exp.Table | exp.Window | exp.Star):
        raise Invalid(
            "row filters may not contain subqueries, tables or windows", code="invalid_row_filter"
        )
    if isinstance(node, exp.Placeholder | exp.Parameter):
        raise Invalid("row filters may not contain parameters", code="invalid_row_filter")
    if isinstance(node, exp.Func):
        name = node.name.lower() if isinstance(node, exp.Anonymous) else node.key
        if name not in SCALARS:
            raise Invalid(
                f"function {name}() is not allowed in a row filter", code="invalid_row_filter"
            )
    if isinstance(node, exp.Column) and (node.table or node.name.lower() not in known):
        raise Invalid(
            f"row filter names '{node.sql()}', which is not a column of the dataset",
            code="invalid_row_filter",
        )


def predicate_columns(predicate: str) -> set[str]:
    """The column names a (validated) filter reads."""
    return set(_predicate_columns(predicate))


@functools.lru_cache(maxsize=1024)
def _predicate_columns(predicate: str) -> frozenset[str]:
    # A pure function of the text, asked on every query of an agreement: parse it once.
    condition = sqlglot.parse_one(f"SELECT 1 FROM t WHERE {predicate}", dialect="duckdb")
    return frozenset(column.name.lower() for column in condition.find_all(exp.Column))
