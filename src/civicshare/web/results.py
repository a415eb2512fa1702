"""Turning a governed query's result into what a results table and a chart need to show."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

NUMERIC_PREFIXES = ("int", "uint", "float", "double", "decimal")


@dataclass(frozen=True)
class Cell:
    text: str
    numeric: bool = False
    suppressed: bool = False
    missing: bool = False
    reason: str = ""  # why a suppressed cell is withheld: "primary" or "complementary"


@dataclass
class ResultTable:
    columns: list[dict[str, str]]
    rows: list[list[Cell]]
    truncated: bool = False
    suppressed_count: int = 0
    raw_rows: list[list[Any]] = field(default_factory=list)

    @classmethod
    def of(cls, body: dict[str, Any], *, group_digits: bool = True) -> ResultTable:
        """From the JSON body of ``query.run_query``: cells marked suppressed or missing.

        ``group_digits=False`` shows integers as they are (a year stays 1966, not 1,966).
        """
        columns: list[dict[str, str]] = body["columns"]
        names = [column["name"] for column in columns]
        entries = body.get("suppressed", [])
        rows = []
        for raw in body["rows"]:
            record = dict(zip(names, raw, strict=True))
            reasons = _withheld(record, entries)
            rows.append(
                [
                    _cell(
                        value,
                        column["type"],
                        name in reasons or None in reasons,
                        reasons.get(name) or reasons.get(None, ""),
                        group_digits,
                    )
                    for value, column, name in zip(raw, columns, names, strict=True)
                ]
            )
        return cls(
            columns=columns,
            rows=rows,
            truncated=bool(body.get("truncated")),
            suppressed_count=len(entries),
            raw_rows=body["rows"],
        )


def _withheld(record: dict[str, Any], entries: list[dict[str, Any]]) -> dict[str | None, str]:
    """Why values of this row are withheld, by column; ``None`` stands for the whole row.

    An entry without a column suppresses the row's cell (its counts); one with a column
    withholds only that column's value (a sum or average under the dominance rule).
    """
    reasons: dict[str | None, str] = {}
    for entry in entries:
        if all(record.get(key) == value for key, value in entry["cell"].items()):
            reasons.setdefault(entry.get("column"), str(entry.get("reason") or "primary"))
    return reasons


def _cell(
    value: Any, arrow_type: str, row_suppressed: bool, reason: str = "", group_digits: bool = True
) -> Cell:
    numeric = arrow_type.startswith(NUMERIC_PREFIXES)
    if value is None:
        # In a suppressed row the missing counts are the suppressed cells.
        if row_suppressed:
            return Cell("suppressed", numeric, True, True, reason)
        return Cell("—", numeric, False, True)
    if isinstance(value, float):
        return Cell(f"{value:,.6g}", numeric)
    if isinstance(value, int) and not isinstance(value, bool) and numeric:
        return Cell(f"{value:,}" if group_digits else str(value), numeric)
    if isinstance(value, dict | list):
        return Cell(json.dumps(value, ensure_ascii=False))
    return Cell(str(value), numeric)


def bar_chart(table: ResultTable, *, label: str, value: str, title: str) -> dict[str, Any]:
    """A Vega-Lite spec of horizontal bars (categories) from two result columns."""
    names = [c["name"] for c in table.columns]
    li, vi = names.index(label), names.index(value)
    values = [{"label": str(row[li]), "rows": row[vi]} for row in table.raw_rows]
    return {
        "$schema": "https://vega.github.io/schema/vega-lite/v6.json",
        "description": title,
        "title": title,
        "width": "container",
        "data": {"values": values},
        "mark": {"type": "bar", "color": "#1a4480"},
        "encoding": {
            "y": {"field": "label", "type": "nominal", "sort": "-x", "title": label},
            "x": {"field": "rows", "type": "quantitative", "title": "rows"},
            "tooltip": [{"field": "label"}, {"field": "rows"}],
        },
    }


def time_chart(table: ResultTable, *, period: str, value: str, title: str) -> dict[str, Any]:
    """A Vega-Lite spec of a time series from two result columns."""
    names = [c["name"] for c in table.columns]
    pi, vi = names.index(period), names.index(value)
    values = [{"period": row[pi], "rows": row[vi]} for row in table.raw_rows]
    return {
        "$schema": "https://vega.github.io/schema/vega-lite/v6.json",
        "description": title,
        "title": title,
        "width": "container",
        "data": {"values": values},
        "mark": {"type": "line", "point": True, "color": "#1a4480"},
        "encoding": {
            "x": {"field": "period", "type": "temporal", "timeUnit": "yearmonth", "title": period},
            "y": {"field": "rows", "type": "quantitative", "title": "rows"},
            "tooltip": [{"field": "period", "type": "temporal"}, {"field": "rows"}],
        },
    }
