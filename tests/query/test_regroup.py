"""Grouping before treatment gives exactly the plain policy view's result, or is not used.

The engine runs the grouping-first plan only from ``REGROUP_MIN_ROWS`` source rows on; these
tests lower that to 0 (or run both SQL forms directly) so the small tables here exercise it.
"""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from civicshare.query.engine import load_sources, protect_aggregate
from civicshare.query.parse import parse_query
from civicshare.query.rewrite import Plan, plan_query
from civicshare.query.sandbox import sandbox
from tests.query.enginekit import PEOPLE, plan, run, view

# Treatments that apply to each key column's type (every one is a function of the value).
KEY_TREATMENTS = {
    "zip": ["clear", "redact", "show_last(2)", "pseudonym", "null", "generalise(prefix=2)"],
    "age": ["clear", "generalise(width=10)", "generalise(width=7)", "generalise(bins=18,65)",
            "show_last(1)", "pseudonym", "null"],
    "day": ["clear", "year_only", "pseudonym", "redact"],
    "code": ["clear", "generalise(prefix=1)", "show_last(1)", "pseudonym"],
}  # fmt: skip
VALUE_TREATMENTS = ["clear", "generalise(width=10)"]
AGGREGATES = [
    "count(*)",
    "count(amount)",
    "sum(amount)",
    "min(amount)",
    "max(amount)",
    "min(zip)",
    "max(day)",
    "sum(cost)",
    "min(score)",
]


@st.composite
def tables(draw: st.DrawFn) -> pa.Table:
    rows = draw(st.integers(min_value=0, max_value=60))
    zips = st.one_of(st.none(), st.sampled_from(["94110", "94112", "94103", "10001", "9"]))
    ages = st.one_of(st.none(), st.integers(min_value=-5, max_value=99))
    days = st.one_of(st.none(), st.dates(dt.date(2019, 12, 25), dt.date(2021, 1, 5)))
    codes = st.one_of(st.none(), st.sampled_from(["A1", "A2", "B1", "", "Ä"]))
    amounts = st.one_of(st.none(), st.integers(min_value=-(10**12), max_value=10**12))
    costs = st.one_of(
        st.none(), st.decimals(min_value=-1000, max_value=1000, places=2, allow_nan=False)
    )
    scores = st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False, width=32))

    def column(strategy: st.SearchStrategy[Any]) -> list[Any]:
        return draw(st.lists(strategy, min_size=rows, max_size=rows))

    return pa.table(
        {
            "id": pa.array(range(rows), pa.int64()),
            "zip": pa.array(column(zips), pa.string()),
            "age": pa.array(column(ages), pa.int64()),
            "day": pa.array(column(days), pa.date32()),
            "code": pa.array(column(codes), pa.string()),
            "amount": pa.array(column(amounts), pa.int64()),
            "cost": pa.array(column(costs), pa.decimal128(9, 2)),
            "score": pa.array(column(scores), pa.float64()),
        }
    )


@st.composite
def cases(draw: st.DrawFn) -> tuple[pa.Table, dict[str, str], str]:
    table = draw(tables())
    keys = draw(st.lists(st.sampled_from(sorted(KEY_TREATMENTS)), min_size=1, max_size=3))
    keys = list(dict.fromkeys(keys))
    grants = {name: draw(st.sampled_from(KEY_TREATMENTS[name])) for name in KEY_TREATMENTS}
    grants["amount"] = draw(st.sampled_from(VALUE_TREATMENTS))
    grants["cost"] = "clear"
    grants["score"] = "clear"
    grants["id"] = "clear"
    if all(grants[key] == "clear" for key in keys):
        grants[keys[0]] = KEY_TREATMENTS[keys[0]][-1]
    aggregates = draw(st.lists(st.sampled_from(AGGREGATES), min_size=1, max_size=4))
    outputs = [f"{key}" for key in draw(st.permutations(keys))]
    outputs += [f"{agg} AS a{index}" for index, agg in enumerate(aggregates)]
    where = draw(
        st.sampled_from(
            ["", " WHERE amount > 0", " WHERE zip <> 'x' OR age IS NULL", " WHERE id % 3 = 1"]
        )
    )
    group = (
        ", ".join(keys)
        if draw(st.booleans())
        else ", ".join(str(outputs.index(key) + 1) for key in keys)
    )
    order = draw(st.sampled_from(["", " ORDER BY 1", f" ORDER BY {keys[0]} DESC NULLS FIRST"]))
    sql = f"SELECT {', '.join(outputs)} FROM t.d{where} GROUP BY {group}{order}"
    return table, grants, sql


def _rows(table: pa.Table) -> list[tuple[Any, ...]]:
    rows = [tuple(row.values()) for row in table.to_pylist()]
    return sorted(rows, key=lambda row: [(value is None, repr(value)) for value in row])


def _both(built: Plan) -> tuple[pa.Table, pa.Table]:
    """The grouping-first SQL run as written, and the plain policy-view SQL."""
    assert built.reference_sql is not None
    sources = load_sources(built)
    box = sandbox()
    fast = box.fetch(built.sql, sources, max_rows=10_000).table
    plain = box.fetch(built.reference_sql, sources, max_rows=10_000).table
    return fast, plain


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_grouping_first_equals_the_policy_view(case: tuple[pa.Table, dict[str, str], str]) -> None:
    table, grants, sql = case
    built = plan(sql, {"t.d": view("t.d", table, grants, row_filter="age IS NULL OR age < 90")})
    fast, plain = _both(built)
    assert fast.schema.types == plain.schema.types
    assert _rows(fast) == _rows(plain)
    if " ORDER BY 1" in sql:
        assert fast.column(0).to_pylist() == plain.column(0).to_pylist()
    # Through the engine, the result also carries the plain query's column names.
    assert (
        run(
            sql,
            {"t.d": view("t.d", table, grants, row_filter="age IS NULL OR age < 90")},
            regroup_min_rows=0,
        ).table.schema
        == plain.schema
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables(), st.sampled_from(KEY_TREATMENTS["zip"][1:]), st.sampled_from(KEY_TREATMENTS["age"]))
def test_aggregate_only_cells_are_the_same(table: pa.Table, zip_spec: str, age_spec: str) -> None:
    """Counts and cell keys combine exactly, so suppression and noise are unchanged."""
    grants = {"zip": zip_spec, "age": age_spec, "day": "year_only"}
    restricted = view(
        "t.d", table, grants, aggregate_only=True, min_cell=3, record_key_columns=("id",)
    )
    built = plan("SELECT zip, age, count(*) FROM t.d GROUP BY zip, age", {"t.d": restricted})
    assert built.aggregate is not None
    fast, plain = _both(built)
    assert _rows(fast) == _rows(plain)
    released = protect_aggregate(
        fast.rename_columns(plain.column_names), built.aggregate, truncated=False
    )
    reference = protect_aggregate(plain, built.aggregate, truncated=False)
    assert _rows(released.table) == _rows(reference.table)
    assert sorted(map(repr, released.suppressed)) == sorted(map(repr, reference.suppressed))


def test_masked_values_merge_into_one_group() -> None:
    """94110, 94112 and 94103 all become 941**: one group, counts added (not three rows)."""
    output = run(
        "SELECT zip, count(*) AS n, max(age) AS oldest FROM p.people GROUP BY zip ORDER BY zip",
        {"p.people": view("p.people", PEOPLE, {"zip": "generalise(prefix=3)", "age": "clear"})},
        regroup_min_rows=0,
    )
    assert output.table.to_pylist() == [
        {"zip": "941**", "n": 4, "oldest": 70},
        {"zip": None, "n": 1, "oldest": 17},
    ]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT zip, avg(age) FROM p.people GROUP BY zip",  # avg does not combine
        "SELECT zip, count(DISTINCT age) FROM p.people GROUP BY zip",
        "SELECT zip, sum(income) FROM p.people GROUP BY zip",  # float sums depend on order
        "SELECT zip, count(*) FROM p.people GROUP BY zip HAVING count(*) > 1",
        "SELECT zip, count(*) FROM p.people GROUP BY zip LIMIT 1",
        "SELECT zip, max(to_json(p)) FROM p.people AS p GROUP BY zip",  # the row as a value
        "SELECT zip, max(#1) FROM p.people GROUP BY zip",
        "SELECT zip, count(*) FROM p.people GROUP BY zip, upper(name)",
        "SELECT zip AS age, count(*) FROM p.people GROUP BY zip",
        "SELECT income, count(*) FROM p.people GROUP BY income",  # float key
        "SELECT zip, count(*) FILTER (WHERE age > 1) FROM p.people GROUP BY zip",
    ],
)
def test_other_shapes_keep_the_plain_plan(sql: str) -> None:
    grants = {"zip": "generalise(prefix=3)", "age": "clear", "name": "clear", "income": "redact"}
    if "income" in sql and "sum" not in sql:
        grants["income"] = "generalise(width=1000)"
    if "sum(income)" in sql:
        grants["income"] = "clear"
    built = plan(sql, {"p.people": view("p.people", PEOPLE, grants)})
    assert built.reference_sql is None
    assert "__cs_k" not in built.sql


def test_stored_keys_never_leave_the_query() -> None:
    """The grouping-first SQL outputs only treated keys and combined aggregates."""
    grants = {"zip": "pseudonym", "age": "clear"}
    built = plan(
        "SELECT zip, count(*) AS n FROM p.people GROUP BY zip",
        {"p.people": view("p.people", PEOPLE, grants)},
    )
    assert built.reference_sql is not None
    output = run(
        "SELECT zip, count(*) AS n FROM p.people GROUP BY zip",
        {"p.people": view("p.people", PEOPLE, grants)},
        regroup_min_rows=0,
    )
    stored = {value for value in PEOPLE.column("zip").to_pylist() if value}
    assert output.table.column_names == ["zip", "n"]
    assert not stored & set(output.table.column("zip").to_pylist())


def test_decimal_sum_keeps_its_type() -> None:
    table = pa.table(
        {
            "zip": ["94110", "94112", "94110"],
            "cost": pa.array(
                [decimal.Decimal("1.10"), decimal.Decimal("2.25"), None], pa.decimal128(9, 2)
            ),
        }
    )
    grants = {"zip": "generalise(prefix=3)", "cost": "clear"}
    output = run(
        "SELECT zip, sum(cost) AS c FROM t.d GROUP BY zip",
        {"t.d": view("t.d", table, grants)},
        regroup_min_rows=0,
    )
    assert output.table.to_pylist() == [{"zip": "941**", "c": decimal.Decimal("3.35")}]


@pytest.mark.parametrize("aggregate_only", [False, True])
def test_without_regrouping_the_plan_is_the_plain_one(aggregate_only: bool) -> None:
    """What ``run_query`` plans for small sources: the reference SQL alone, nothing else."""
    sql = "SELECT zip, count(*) AS n FROM p.people GROUP BY zip"
    grants = {"zip": "generalise(prefix=3)", "age": "clear"}
    views = {"p.people": view("p.people", PEOPLE, grants, aggregate_only=aggregate_only)}
    both = plan(sql, views)
    parsed = parse_query(sql)
    plain = plan_query(parsed, {ref: views[ref.ref] for ref in parsed.refs}, regroup=False)
    assert both.reference_sql is not None
    assert "__cs_k" in both.sql
    assert (plain.sql, plain.reference_sql) == (both.reference_sql, None)
    assert (plain.aggregate is None) is not aggregate_only
