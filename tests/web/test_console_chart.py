"""The console's chart of a result: which columns it picks and how it draws them."""

from __future__ import annotations

from typing import Any

from civicshare.policy.models import QueryableColumn, QueryableTable
from civicshare.web.console import CHART_ROWS, result_chart, starter_sql
from civicshare.web.results import ResultTable


def _table(columns: list[tuple[str, str]], rows: list[list[Any]], **body: Any) -> ResultTable:
    return ResultTable.of(
        {"columns": [{"name": n, "type": t} for n, t in columns], "rows": rows, **body}
    )


def test_defaults_are_the_first_category_against_the_first_number() -> None:
    table = _table(
        [("n", "int64"), ("zip", "string"), ("total", "double")],
        [[12, "94102", 1.5], [None, "94103", 2.5]],
        suppressed=[{"cell": {"zip": "94103"}, "reason": "primary"}],
    )
    chart = result_chart(table)
    assert chart is not None
    assert (chart.x, chart.y) == ("zip", "n")
    assert chart.spec["mark"]["type"] == "bar"
    # The suppressed cell has no value and is not drawn.
    assert chart.spec["data"]["values"] == [{"x": "94102", "y": 12}]
    assert chart.x_choices == ["zip", "n", "total"]
    assert chart.y_choices == ["n", "total"]


def test_dates_are_drawn_as_a_line() -> None:
    table = _table([("day", "date32[day]"), ("n", "int64")], [["2026-01-01", 3]])
    chart = result_chart(table)
    assert chart is not None
    assert chart.spec["mark"]["type"] == "line"
    assert chart.spec["encoding"]["x"]["type"] == "temporal"


def test_picked_columns_are_used_and_unknown_picks_fall_back() -> None:
    table = _table([("zip", "string"), ("a", "int64"), ("b", "int64")], [["1", 1, 2]])
    picked = result_chart(table, x="a", y="b")
    assert picked is not None
    assert (picked.x, picked.y) == ("a", "b")
    fallback = result_chart(table, x="nope", y="zip")
    assert fallback is not None
    assert (fallback.x, fallback.y) == ("zip", "a")
    same = result_chart(table, x="a", y="a")
    assert same is not None
    assert (same.x, same.y) == ("a", "b")


def test_no_chart_without_rows_or_numbers() -> None:
    assert result_chart(_table([("zip", "string")], [["94102"]])) is None
    assert result_chart(_table([("zip", "string"), ("n", "int64")], [])) is None
    assert result_chart(_table([("n", "int64")], [[1]])) is None  # nothing to draw it against


def test_long_results_are_charted_from_their_first_rows() -> None:
    rows = [[str(i), i] for i in range(CHART_ROWS + 50)]
    chart = result_chart(_table([("k", "string"), ("n", "int64")], rows))
    assert chart is not None
    assert chart.charted_rows == CHART_ROWS
    assert len(chart.spec["data"]["values"]) == CHART_ROWS


def test_starter_queries_follow_the_terms() -> None:
    columns = [QueryableColumn(name="zip", type="string")]
    grouped = QueryableTable(
        ref="health.cases", title="Cases", access="agreement", columns=columns,
        aggregate_only=True,
    )  # fmt: skip
    rows = grouped.model_copy(update={"aggregate_only": False})
    assert "GROUP BY zip" in starter_sql(grouped)
    assert "count(*)" in starter_sql(grouped)
    assert "LIMIT" not in starter_sql(grouped)  # refused under aggregate-only
    assert starter_sql(rows).startswith("SELECT *")


def test_a_withheld_sum_marks_its_cell_and_a_suppressed_count_its_row() -> None:
    body = {
        "columns": [
            {"name": "zip", "type": "string"},
            {"name": "n", "type": "int64"},
            {"name": "total", "type": "double"},
        ],
        "rows": [["94110", 40, None], ["94112", None, None], ["94117", 25, 310.5]],
        "suppressed": [
            {"cell": {"zip": "94110"}, "column": "total", "reason": "dominance"},
            {"cell": {"zip": "94112"}, "reason": "primary"},
        ],
    }
    table = ResultTable.of(body)
    dominated, small, released = table.rows
    assert [cell.suppressed for cell in dominated] == [False, False, True]
    assert dominated[2].reason == "dominance"
    assert dominated[1].text == "40"
    assert [cell.suppressed for cell in small] == [False, True, True]
    assert {cell.reason for cell in small[1:]} == {"primary"}
    assert not any(cell.suppressed for cell in released)
    assert table.suppressed_count == 2
