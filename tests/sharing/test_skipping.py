"""File skipping by predicate hints: never drops a file that holds a matching row."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from civicshare.sharing import skipping
from civicshare.sharing.materialize import _stats

START = dt.date(2026, 1, 1)


def _column(name: str, value_type: str) -> dict[str, Any]:
    return {"op": "column", "name": name, "valueType": value_type}


def _literal(value: Any, value_type: str) -> dict[str, Any]:
    return {"op": "literal", "value": str(value), "valueType": value_type}


# ---------------------------------------------------------------------------- a reference


def truth(node: dict[str, Any], row: dict[str, Any]) -> bool | None:
    """SQL's three-valued truth of the predicate on one row (None: unknown)."""
    op, children = node["op"], node.get("children", [])
    if op == "and":
        values = [truth(child, row) for child in children]
        return False if False in values else (None if None in values else True)
    if op == "or":
        values = [truth(child, row) for child in children]
        return True if True in values else (None if None in values else False)
    if op == "not":
        value = truth(children[0], row)
        return None if value is None else not value
    if op == "isNull":
        return row[children[0]["name"]] is None
    left, right = (_operand(child, row) for child in children)
    if left is None or right is None:
        return None
    return {
        "equal": left == right,
        "lessThan": left < right,
        "lessThanOrEqual": left <= right,
        "greaterThan": left > right,
        "greaterThanOrEqual": left >= right,
    }[op]


def _operand(node: dict[str, Any], row: dict[str, Any]) -> Any:
    if node["op"] == "column":
        return row[node["name"]]
    if node["valueType"] == "date":
        return dt.date.fromisoformat(node["value"])
    return int(node["value"])


# ---------------------------------------------------------------------------- generated cases

values = st.one_of(st.none(), st.integers(-20, 20))
rows = st.lists(st.tuples(values, values), min_size=1, max_size=60)


def _compare(op: str, column: dict[str, Any], literal: dict[str, Any], flip: bool) -> Any:
    return {"op": op, "children": [literal, column] if flip else [column, literal]}


def _leaf() -> st.SearchStrategy[dict[str, Any]]:
    comparisons = st.sampled_from(sorted(skipping.COMPARISONS))
    number = st.builds(
        lambda op, value, flip: _compare(op, _column("n", "int"), _literal(value, "long"), flip),
        comparisons,
        st.integers(-25, 25),
        st.booleans(),
    )
    day = st.builds(
        lambda op, offset, flip: _compare(
            op, _column("d", "date"), _literal(START + dt.timedelta(offset), "date"), flip
        ),
        comparisons,
        st.integers(-25, 25),
        st.booleans(),
    )
    null = st.builds(
        lambda name: {"op": "isNull", "children": [_column(name, "int")]},
        st.sampled_from(["n", "d"]),
    )
    return st.one_of(number, day, null)


def _nary(op: str, inner: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[Any]:
    return st.builds(
        lambda kids: {"op": op, "children": kids}, st.lists(inner, min_size=2, max_size=3)
    )


predicates = st.recursive(
    _leaf(),
    lambda inner: st.one_of(
        st.builds(lambda child: {"op": "not", "children": [child]}, inner),
        _nary("and", inner),
        _nary("or", inner),
    ),
    max_leaves=6,
)


def _files(pairs: list[tuple[int | None, int | None]], size: int) -> list[list[dict[str, Any]]]:
    records = [{"n": n, "d": None if d is None else START + dt.timedelta(days=d)} for n, d in pairs]
    return [records[i : i + size] for i in range(0, len(records), size)]


def _file_stats(records: list[dict[str, Any]]) -> dict[str, Any]:
    table = pa.table(
        {
            "n": pa.array([r["n"] for r in records], pa.int64()),
            "d": pa.array([r["d"] for r in records], pa.date32()),
        }
    )
    stats: dict[str, Any] = json.loads(_stats(table))  # the statistics the hub serves
    return stats


@settings(max_examples=400, deadline=None)
@given(rows, st.integers(1, 12), predicates)
def test_a_file_holding_a_matching_row_is_never_skipped(
    pairs: list[tuple[int | None, int | None]], size: int, predicate: dict[str, Any]
) -> None:
    keep = skipping.file_filter(json.dumps(predicate), None)
    assert keep is not None
    for records in _files(pairs, size):
        if any(truth(predicate, row) is True for row in records):
            assert keep(_file_stats(records)), (predicate, records)


# ---------------------------------------------------------------------------- what is skipped


def _stats_of(numbers: list[int | None]) -> dict[str, Any]:
    return _file_stats([{"n": n, "d": None} for n in numbers])


def test_files_outside_a_range_are_skipped() -> None:
    low = _compare("greaterThanOrEqual", _column("n", "int"), _literal(10, "int"), False)
    high = _compare("lessThan", _column("n", "int"), _literal(20, "int"), False)
    keep = skipping.file_filter(json.dumps({"op": "and", "children": [low, high]}), None)
    assert keep is not None
    files = [list(range(0, 10)), list(range(10, 20)), list(range(20, 30)), [5, 25]]
    assert [keep(_stats_of(f)) for f in files] == [False, True, False, True]


def test_null_checks_use_the_null_counts() -> None:
    is_null = {"op": "isNull", "children": [_column("n", "int")]}
    keep_nulls = skipping.file_filter(json.dumps(is_null), None)
    keep_values = skipping.file_filter(json.dumps({"op": "not", "children": [is_null]}), None)
    assert keep_nulls is not None
    assert keep_values is not None
    assert [keep_nulls(_stats_of(f)) for f in ([1, 2], [1, None], [None])] == [False, True, True]
    assert [keep_values(_stats_of(f)) for f in ([1, 2], [1, None], [None])] == [True, True, False]


@pytest.mark.parametrize(
    ("hint", "kept"),
    [
        ("n < 10", [True, False]),
        ("10 > n", [True, False]),
        ("n >= 10", [False, True]),
        ("n = 15", [False, True]),
        ("n <> 3", [True, True]),
        ("n = -4", [False, False]),
        ("n IS NULL", [False, False]),
        ("n IS NOT NULL", [True, True]),
    ],
)
def test_legacy_sql_hints(hint: str, kept: list[bool]) -> None:
    keep = skipping.file_filter(None, [hint])
    assert keep is not None
    assert [keep(_stats_of(f)) for f in (list(range(10)), list(range(10, 20)))] == kept


@pytest.mark.parametrize(
    "hint",
    [
        "not json",
        "[1, 2]",
        json.dumps({"op": "and", "children": "x"}),
        json.dumps({"op": "and", "children": [{"op": "equal"}] * 2000}),
    ],
)
def test_malformed_json_hints_are_ignored(hint: str) -> None:
    assert skipping.file_filter(hint, None) is None


@pytest.mark.parametrize(
    "node",
    [
        {"op": "equal", "children": [_column("n", "string"), _literal(5, "string")]},
        {"op": "equal", "children": [_column("n", "int"), _column("d", "int")]},
        {"op": "lessThan", "children": [_column("n", "int"), _literal("abc", "int")]},
        {"op": "like", "children": [_column("n", "int"), _literal(5, "int")]},
        {"op": "equal", "children": [_column("missing", "int"), _literal(5, "int")]},
    ],
)
def test_what_is_not_understood_keeps_the_file(node: dict[str, Any]) -> None:
    keep = skipping.file_filter(json.dumps(node), None)
    assert keep is not None
    assert keep(_stats_of([1, 2, 3]))


@pytest.mark.parametrize("hint", ["n < 1.5", "n = x", "f(n) = 1", "n IN (1, 2)", "1 = 1"])
def test_unsupported_sql_hints_are_ignored(hint: str) -> None:
    keep = skipping.file_filter(None, [hint])
    assert keep is None or keep(_stats_of([100]))


def test_timestamps_compared_as_dates_allow_for_the_client_time_zone() -> None:
    table = pa.table(
        {"t": pa.array([dt.datetime(2026, 3, 1, 23, 30, tzinfo=dt.UTC)], pa.timestamp("us", "UTC"))}
    )
    stats = json.loads(_stats(table))
    next_day = {"op": "equal", "children": [_column("t", "date"), _literal("2026-03-02", "date")]}
    far = {"op": "equal", "children": [_column("t", "date"), _literal("2026-03-05", "date")]}
    keep_next, keep_far = (skipping.file_filter(json.dumps(n), None) for n in (next_day, far))
    assert keep_next is not None
    assert keep_far is not None
    assert keep_next(stats)  # 2026-03-02 00:30 in UTC+1
    assert not keep_far(stats)
