"""Best-effort file skipping for Delta Sharing's predicate hints, from per-file statistics.

A client may send ``jsonPredicateHints`` (a JSON tree of ``column``/``literal`` leaves under
comparison, ``isNull``, ``and``, ``or`` and ``not`` ops) and the older ``predicateHints`` (SQL
comparisons of a column with a constant). The protocol makes both hints: the server may skip
files that cannot hold a matching row, and the client filters the rows it gets anyway. So a
file is skipped only when its statistics (row count, null counts, min and max) *prove* that no
row satisfies the predicate; anything not understood (an unknown op or type, a column without
statistics, a malformed hint) keeps the file.

Each predicate is judged on a file as two booleans: whether some row *may* make it true and
whether some row *may* make it false (SQL's NULL makes neither). ``not`` swaps them; ``and``
may be true only if every child may be, ``or`` if any may be. These are over-approximations,
never under: a file holding a matching row is always kept (property-tested).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlglot
from sqlglot import exp

log = logging.getLogger("civicshare.sharing")

MAX_HINT_NODES = 1000  # a hint is a handful of comparisons; more is not worth evaluating

Stats = Mapping[str, Any]


@dataclass(frozen=True)
class Verdict:
    may_be_true: bool
    may_be_false: bool

    def negated(self) -> Verdict:
        return Verdict(self.may_be_false, self.may_be_true)


UNKNOWN = Verdict(True, True)
COMPARISONS = {"equal", "lessThan", "lessThanOrEqual", "greaterThan", "greaterThanOrEqual"}
FLIPPED = {
    "equal": "equal",
    "lessThan": "greaterThan",
    "lessThanOrEqual": "greaterThanOrEqual",
    "greaterThan": "lessThan",
    "greaterThanOrEqual": "lessThanOrEqual",
}


class UnusableHint(ValueError):
    """A hint this server does not understand: it is ignored, never an error for the client."""


# ---------------------------------------------------------------------------- judging a file


def judge(node: Mapping[str, Any], stats: Stats) -> Verdict:
    """What a file with ``stats`` may make of the predicate ``node``."""
    op = node.get("op")
    children: Sequence[Mapping[str, Any]] = node.get("children") or []
    if op == "and":
        verdicts = [judge(child, stats) for child in children]
        return Verdict(all(v.may_be_true for v in verdicts), any(v.may_be_false for v in verdicts))
    if op == "or":
        verdicts = [judge(child, stats) for child in children]
        return Verdict(any(v.may_be_true for v in verdicts), all(v.may_be_false for v in verdicts))
    if op == "not" and len(children) == 1:
        return judge(children[0], stats).negated()
    if op == "isNull" and len(children) == 1 and children[0].get("op") == "column":
        return _is_null(str(children[0].get("name")), stats)
    if op in COMPARISONS and len(children) == 2:
        return _comparison(str(op), children[0], children[1], stats)
    return UNKNOWN


def _is_null(column: str, stats: Stats) -> Verdict:
    rows, nulls = stats.get("numRecords"), (stats.get("nullCount") or {}).get(column)
    if not isinstance(rows, int) or not isinstance(nulls, int):
        return UNKNOWN
    return Verdict(nulls > 0, nulls < rows)


def _comparison(
    op: str, left: Mapping[str, Any], right: Mapping[str, Any], stats: Stats
) -> Verdict:
    if left.get("op") == "literal" and right.get("op") == "column":
        op, left, right = FLIPPED[op], right, left
    if left.get("op") != "column" or right.get("op") != "literal":
        return UNKNOWN  # column against column, or two literals: not worth it
    column = str(left.get("name"))
    low = (stats.get("minValues") or {}).get(column)
    high = (stats.get("maxValues") or {}).get(column)
    if low is None or high is None:
        return UNKNOWN
    value_type = str(right.get("valueType") or left.get("valueType") or "")
    try:
        value = _typed(right.get("value"), value_type)
        low, high = _typed(low, value_type), _typed(high, value_type)
    except (TypeError, ValueError, OverflowError):
        return UNKNOWN
    if value_type == "date" and len(str(stats["minValues"][column])) > 10:
        # Timestamps (stored in UTC) become dates in the client's time zone: a day either way.
        low, high = low - dt.timedelta(days=1), high + dt.timedelta(days=1)
    return _bounds_verdict(op, low, high, value)


def _bounds_verdict(op: str, low: Any, high: Any, value: Any) -> Verdict:
    """Non-null values lie in [low, high]; ``value`` is the literal on the right."""
    if op == "equal":
        return Verdict(low <= value <= high, not (low == high == value))
    if op == "lessThan":
        return Verdict(low < value, high >= value)
    if op == "lessThanOrEqual":
        return Verdict(low <= value, high > value)
    if op == "greaterThan":
        return Verdict(high > value, low <= value)
    if op == "greaterThanOrEqual":
        return Verdict(high >= value, low < value)
    return UNKNOWN


def _typed(value: Any, value_type: str) -> Any:
    """A statistic or literal as the comparison's type (raises when it is not one)."""
    if value is None:
        raise ValueError("null bound")
    if value_type in ("int", "long"):
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise TypeError(value_type)
        return int(value)
    if value_type == "date":
        return dt.date.fromisoformat(str(value)[:10])
    if value_type == "string":
        if not isinstance(value, str):
            raise TypeError(value_type)
        return value
    if value_type == "bool":
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "false"):
            return str(value).lower() == "true"
        raise ValueError(value)
    raise TypeError(f"value type {value_type!r}")


# ---------------------------------------------------------------------------- reading the hints


def parse_json_hint(text: str) -> Mapping[str, Any]:
    try:
        node = json.loads(text)
    except ValueError as exc:
        raise UnusableHint("jsonPredicateHints is not JSON") from exc
    if not isinstance(node, dict):
        raise UnusableHint("jsonPredicateHints is not an object")
    _check_size(node)
    return node


def _check_size(node: Any) -> None:
    pending, seen = [node], 0
    while pending:
        current = pending.pop()
        seen += 1
        if seen > MAX_HINT_NODES or not isinstance(current, dict):
            raise UnusableHint("jsonPredicateHints is too large or malformed")
        children = current.get("children") or []
        if not isinstance(children, list):
            raise UnusableHint("children must be a list")
        pending.extend(children)


_SQL_OPS: dict[type[exp.Expression], str] = {
    exp.EQ: "equal",
    exp.LT: "lessThan",
    exp.LTE: "lessThanOrEqual",
    exp.GT: "greaterThan",
    exp.GTE: "greaterThanOrEqual",
}


def _sql_op(tree: Any) -> str | None:
    return next((op for kind, op in _SQL_OPS.items() if type(tree) is kind), None)


def parse_sql_hint(text: str) -> Mapping[str, Any]:
    """One of the legacy ``predicateHints`` (``col = 123``, ``'x' < col``, ``col IS NULL``,
    ``col <> 'y'``) as the JSON tree; anything else is unusable."""
    if len(text) > 1000:
        raise UnusableHint("predicate hint too long")
    try:
        tree = sqlglot.parse_one(text, read="spark")
    except sqlglot.errors.SqlglotError as exc:
        raise UnusableHint("predicate hint does not parse") from exc
    negate = False
    if isinstance(tree, exp.Not):
        negate, tree = True, tree.this
    if isinstance(tree, exp.Is) and isinstance(tree.expression, exp.Null):
        node: Mapping[str, Any] = {"op": "isNull", "children": [_sql_leaf(tree.this)]}
    elif isinstance(tree, exp.NEQ):
        negate = not negate
        node = {"op": "equal", "children": [_sql_leaf(tree.this), _sql_leaf(tree.expression)]}
    elif (op := _sql_op(tree)) is not None:
        node = {"op": op, "children": [_sql_leaf(tree.this), _sql_leaf(tree.expression)]}
    else:
        raise UnusableHint("unsupported predicate hint")
    return {"op": "not", "children": [node]} if negate else node


def _sql_leaf(node: exp.Expression) -> Mapping[str, Any]:
    if isinstance(node, exp.Column):
        return {"op": "column", "name": node.name}
    if isinstance(node, exp.Literal):
        if node.is_string:
            return {"op": "literal", "value": node.this, "valueType": "string"}
        # Integers only: floating-point bounds (NaN sorts above all in Spark) are not used.
        value_type = "long" if node.this.lstrip("-").isdigit() else "unsupported"
        return {"op": "literal", "value": node.this, "valueType": value_type}
    if isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal):
        inner = _sql_leaf(node.this)
        return {**inner, "value": f"-{inner['value']}"}
    raise UnusableHint("predicate hints compare a column with a constant")


def file_filter(
    json_hint: str | None, sql_hints: Sequence[str] | None
) -> Callable[[Stats], bool] | None:
    """A test of a file's statistics, true when the file may hold a matching row; None when
    there is nothing usable to test (then every file is served)."""
    predicates: list[Mapping[str, Any]] = []
    if json_hint:
        try:
            predicates.append(parse_json_hint(json_hint))
        except UnusableHint as exc:
            log.info("ignoring jsonPredicateHints: %s", exc)
    elif sql_hints:
        # The legacy hints only when no JSON hint came: newer clients send both, meaning the same.
        for hint in sql_hints:
            try:
                predicates.append(parse_sql_hint(hint))
            except UnusableHint as exc:
                log.info("ignoring a predicate hint: %s", exc)
    if not predicates:
        return None
    tree = predicates[0] if len(predicates) == 1 else {"op": "and", "children": predicates}
    return lambda stats: judge(tree, stats).may_be_true
