"""Aggregate-only views: shape rules, small-cell and complementary suppression, cell keys."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from civicshare.errors import Forbidden
from civicshare.query.disclosure import Cell, perturbation, released_count, suppress
from tests.query.enginekit import plan, run, view

ZIPS = ["94102", "94103", "94110", "94112", "94124"]


def _cases(rows: int = 3000, seed: int = 5) -> pa.Table:
    rng = random.Random(seed)
    zips, weeks, ages = [], [], []
    for _ in range(rows):
        zips.append(rng.choice(ZIPS))
        weeks.append(rng.randint(1, 4))
        ages.append(rng.randint(0, 99))
    # A few rare cells: one person in zip 94999, three in week 9 of 94102.
    zips += ["94999", "94102", "94102", "94102"]
    weeks += [1, 9, 9, 9]
    ages += [40, 41, 42, 43]
    ids = [f"R-{i:06d}" for i in range(len(zips))]
    return pa.table({"case_id": ids, "zip": zips, "week": weeks, "age": ages})


CASES = _cases()
GRANTS = {"zip": "clear", "week": "clear", "age": "clear"}


def _views(min_cell: int = 11) -> dict[str, object]:
    return {
        "health.cases": view(
            "health.cases",
            CASES,
            GRANTS,
            aggregate_only=True,
            min_cell=min_cell,
            record_key_columns=("case_id",),
            record_key_salt=424242,
        )
    }


def _truth(*keys: str) -> Counter[tuple[object, ...]]:
    rows = CASES.to_pylist()
    return Counter(tuple(row[k] for k in keys) for row in rows)


def test_grouped_counts_are_released_perturbed_and_small_cells_suppressed() -> None:
    output = run(
        "SELECT zip, week, count(*) AS n FROM health.cases GROUP BY zip, week ORDER BY zip, week",
        _views(),  # type: ignore[arg-type]
    )
    truth = _truth("zip", "week")
    released = {(r["zip"], r["week"]): r["n"] for r in output.table.to_pylist()}
    assert set(released) == set(truth)
    suppressed = {(s["cell"]["zip"], s["cell"]["week"]): s["reason"] for s in output.suppressed}
    assert suppressed[("94999", 1)] == "primary"
    assert suppressed[("94102", 9)] == "primary"
    for cell, count in truth.items():
        if cell in suppressed:
            assert released[cell] is None
        else:
            assert count >= 11
            assert abs(released[cell] - count) <= 2
    # Complementary: 94102's line and week 9's line each lose a second cell.
    assert sum(1 for (z, _w) in suppressed if z == "94102") >= 2
    assert any(r == "complementary" for r in suppressed.values())


def test_the_same_cell_always_gets_the_same_value() -> None:
    sql = "SELECT zip, count(*) FROM health.cases GROUP BY zip ORDER BY zip"
    first = run(sql, _views()).table.to_pylist()  # type: ignore[arg-type]
    again = run(sql, _views()).table.to_pylist()  # type: ignore[arg-type]
    assert first == again


def test_differencing_two_queries_does_not_reveal_one_persons_presence() -> None:
    """Removing one person per cell (by age) shifts true counts by 1; released diffs vary."""
    base = "SELECT zip, week, count(*) AS n FROM health.cases {} GROUP BY zip, week"
    views = _views()
    exact = 0
    compared = 0
    for age in range(20, 60):
        everyone = {
            (r["zip"], r["week"]): r["n"]
            for r in run(base.format(""), views).table.to_pylist()  # type: ignore[arg-type]
        }
        without = run(base.format(f"WHERE age <> {age}"), views).table.to_pylist()  # type: ignore[arg-type]
        truth_all = _truth("zip", "week")
        truth_without = Counter((r["zip"], r["week"]) for r in CASES.to_pylist() if r["age"] != age)
        for row in without:
            cell = (row["zip"], row["week"])
            if row["n"] is None or everyone[cell] is None:
                continue
            if truth_all[cell] - truth_without[cell] == 1:
                compared += 1
                exact += everyone[cell] - row["n"] == 1
    assert compared > 100
    # Exact recovery would be 100%; the cell-key noise makes it a minority outcome.
    assert exact / compared < 0.5


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM health.cases",
        "SELECT zip FROM health.cases",
        "SELECT zip, age FROM health.cases GROUP BY zip, age LIMIT 1",
        "SELECT zip, count(*) FROM health.cases GROUP BY zip LIMIT 1 OFFSET 3",
        "SELECT zip, count(*) FROM health.cases GROUP BY zip HAVING count(*) < 3",
        "SELECT zip, max(age) FROM health.cases GROUP BY zip",
        "SELECT zip, min(age) FROM health.cases GROUP BY zip",
        "SELECT zip, arg_max(zip, age) FROM health.cases GROUP BY zip",
        "SELECT zip, sum(DISTINCT age) FROM health.cases GROUP BY zip",
        "SELECT zip, sum(age * age) FROM health.cases GROUP BY zip",
        "SELECT zip, sum(zip) FROM health.cases GROUP BY zip",
        "SELECT zip, avg(age) FILTER (WHERE age > 90) FROM health.cases GROUP BY zip",
        "SELECT zip, count(*) + sum(age) FROM health.cases GROUP BY zip",
        "SELECT zip, sum(age) / count(*) FROM health.cases GROUP BY zip",
        "SELECT zip, median(age) FROM health.cases GROUP BY zip",
        "SELECT zip, count(DISTINCT age) FROM health.cases GROUP BY zip",
        "SELECT zip, count(*) FROM health.cases GROUP BY ROLLUP (zip)",
        "SELECT zip, count(*) FROM health.cases GROUP BY zip ORDER BY count(*) DESC",
        "SELECT zip, count(*) FROM (SELECT * FROM health.cases) t GROUP BY zip",
        "WITH t AS (SELECT zip FROM health.cases) SELECT zip, count(*) FROM t GROUP BY zip",
        "SELECT zip, count(*) FROM health.cases GROUP BY zip UNION ALL SELECT '1', 1",
        "SELECT a.zip, count(*) FROM health.cases a JOIN health.cases b USING (zip) GROUP BY 1",
        "SELECT zip, count(*) OVER () FROM health.cases",
        "SELECT DISTINCT zip, count(*) FROM health.cases GROUP BY zip",
        "SELECT zip, week, count(*) FROM health.cases GROUP BY zip",
        "SELECT zip, count(*) FROM health.cases WHERE age = (SELECT max(age) FROM health.cases) "
        "GROUP BY zip",
    ],
)
def test_row_level_and_probing_shapes_are_refused(sql: str) -> None:
    with pytest.raises(Forbidden) as caught:
        plan(sql, _views())  # type: ignore[arg-type]
    assert caught.value.code in {"aggregate_only", "column_not_granted"}


def test_group_by_ordinals_aliases_and_expressions_are_accepted() -> None:
    output = run(
        "SELECT left(zip, 4) AS area, count(*) AS cases FROM health.cases "
        "WHERE age >= 18 GROUP BY 1 ORDER BY area",
        _views(),  # type: ignore[arg-type]
    )
    assert output.table.column_names == ["area", "cases"]
    truth = Counter(r["zip"][:4] for r in CASES.to_pylist() if r["age"] >= 18)
    released = dict(
        zip(
            output.table.column("area").to_pylist(),
            output.table.column("cases").to_pylist(),
            strict=True,
        )
    )
    assert list(released) == sorted(truth)
    reasons = {s["cell"]["area"]: s["reason"] for s in output.suppressed}
    assert reasons["9499"] == "primary"
    assert list(reasons.values()).count("complementary") == 1
    for area, value in released.items():
        assert (value is None) == (area in reasons)
        if value is not None:
            assert abs(value - truth[area]) <= 2


def test_a_global_count_is_one_cell_under_the_same_rules() -> None:
    small = run("SELECT count(*) FROM health.cases WHERE zip = '94999'", _views())  # type: ignore[arg-type]
    assert small.table.column(0).to_pylist() == [None]
    assert small.suppressed == [{"cell": {}, "reason": "primary"}]


@given(
    counts=st.lists(st.lists(st.integers(0, 40), min_size=2, max_size=5), min_size=2, max_size=5)
)
def test_no_line_of_a_table_has_exactly_one_suppressed_cell(counts: list[list[int]]) -> None:
    cells = [
        Cell(keys=(i, j), count=c, cell_key=i * 7919 + j)
        for i, row in enumerate(counts)
        for j, c in enumerate(row)
        if c > 0
    ]
    suppress(cells, min_cell=11)
    for dimension in (0, 1):
        lines: dict[object, list[Cell]] = {}
        for cell in cells:
            lines.setdefault(cell.keys[1 - dimension], []).append(cell)
        for line in lines.values():
            hidden = [c for c in line if c.suppressed]
            assert len(hidden) != 1 or len(line) == 1
    assert all(c.suppressed for c in cells if c.count < 11)


@given(count=st.integers(11, 10_000), key=st.integers(0, 2**32 - 1))
def test_released_counts_stay_within_two_and_never_look_small(count: int, key: int) -> None:
    value = released_count(count, key, 11)
    assert abs(value - count) <= 2
    assert value >= 11
    assert perturbation(count, key) in {-2, -1, 0, 1, 2}


def test_record_keys_fall_back_to_every_column_without_a_primary_key() -> None:
    views = {
        "health.cases": view("health.cases", CASES, GRANTS, aggregate_only=True, record_key_salt=9)
    }
    output = run("SELECT zip, count(*) FROM health.cases GROUP BY zip ORDER BY zip", views)  # type: ignore[arg-type]
    truth = _truth("zip")
    for row in output.table.to_pylist():
        count = row["count_star()"]
        assert count is None or abs(count - truth[(row["zip"],)]) <= 2


def test_min_and_max_are_refused_with_the_reason() -> None:
    with pytest.raises(Forbidden) as caught:
        plan("SELECT zip, max(age) FROM health.cases GROUP BY zip", _views())  # type: ignore[arg-type]
    assert "min() and max() reveal one person's value" in caught.value.message


def _sums(sql: str, views: dict[str, object] | None = None) -> Any:
    return run(sql, views or _views())  # type: ignore[arg-type]


def test_sums_and_averages_are_released_with_bounded_noise() -> None:
    output = _sums(
        "SELECT zip, count(*) AS n, sum(age) AS total, avg(age) AS mean FROM health.cases "
        "GROUP BY zip ORDER BY zip"
    )
    assert output.table.schema.field("total").type == pa.int64()
    assert output.table.schema.field("mean").type == pa.float64()
    rows = CASES.to_pylist()
    for row in output.table.to_pylist():
        ages = [r["age"] for r in rows if r["zip"] == row["zip"]]
        if row["n"] is None:  # a suppressed cell withholds its sum and mean too
            assert row["total"] is None
            assert row["mean"] is None
            continue
        assert abs(row["total"] - sum(ages)) <= 0.5 * max(ages) + 0.5
        # The mean is the released sum over the released count: it reveals no exact count.
        assert row["mean"] * row["n"] == pytest.approx(row["total"], abs=0.5)
    reasons = {(s["cell"]["zip"], s.get("column")): s["reason"] for s in output.suppressed}
    assert reasons[("94999", None)] == "primary"
    assert sum(1 for row in output.table.to_pylist() if row["total"] is not None) >= 3


def test_a_cell_dominated_by_one_record_withholds_its_sum() -> None:
    zips = ["94110"] * 20 + ["94112"] * 20
    income = [1_000] * 19 + [5_000_000] + [1_000] * 20
    table = pa.table({"case_id": list(range(40)), "zip": zips, "income": income})
    views = {
        "health.cases": view(
            "health.cases", table, {"zip": "clear", "income": "clear"}, aggregate_only=True,
            record_key_columns=("case_id",),
        )
    }  # fmt: skip
    output = _sums(
        "SELECT zip, count(*) AS n, sum(income) AS s FROM health.cases GROUP BY zip ORDER BY zip",
        views,
    )
    released = {r["zip"]: r for r in output.table.to_pylist()}
    assert released["94110"]["s"] is None
    assert released["94110"]["n"] is not None  # the count itself is not dominated
    assert abs(released["94112"]["s"] - 20_000) <= 500
    assert {"cell": {"zip": "94110"}, "column": "s", "reason": "dominance"} in output.suppressed


def test_differencing_two_sums_does_not_reveal_one_persons_value() -> None:
    """Removing one person (by age) changes a cell's true sum by their age; released sums
    differ by that exact amount only by chance."""
    base = "SELECT zip, week, sum(age) AS total FROM health.cases {} GROUP BY zip, week"
    views = _views()
    everyone = {
        (r["zip"], r["week"]): r["total"] for r in _sums(base.format(""), views).table.to_pylist()
    }
    rows = CASES.to_pylist()
    exact = compared = 0
    for age in range(20, 60):
        without = _sums(base.format(f"WHERE age <> {age}"), views).table.to_pylist()
        for row in without:
            cell = (row["zip"], row["week"])
            removed = sum(1 for r in rows if (r["zip"], r["week"]) == cell and r["age"] == age)
            if removed != 1 or row["total"] is None or everyone[cell] is None:
                continue
            compared += 1
            exact += everyone[cell] - row["total"] == age
    assert compared > 100
    assert exact / compared < 0.1


def test_sum_of_a_banded_column_uses_the_treated_values() -> None:
    views = {
        "health.cases": view(
            "health.cases", CASES, {"zip": "clear", "age": "generalise(width=10)"},
            aggregate_only=True, record_key_columns=("case_id",),
        )
    }  # fmt: skip
    output = _sums("SELECT zip, sum(age) AS s FROM health.cases GROUP BY zip", views)
    rows = CASES.to_pylist()
    for row in output.table.to_pylist():
        if row["s"] is None:
            continue
        banded = [r["age"] // 10 * 10 for r in rows if r["zip"] == row["zip"]]
        assert abs(row["s"] - sum(banded)) <= 0.5 * max(banded) + 0.5
