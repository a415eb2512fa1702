"""The query console: write SQL, pick a purpose, run or explain it, chart and download the result.

Every run, explain, chart redraw and download is one call of ``query.run_query`` — a governed,
audited query. The page decides nothing about access: it shows what the query service answers,
and the tables list comes from ``policy.queryable_tables``.

Downloads are POST forms with the CSRF token, not links: the SQL (which may carry personal
values in its literals) then never lands in an address, so not in browser history, proxy or
server logs, and another site cannot make a logged-in browser run (and spend the daily quota
of) a query it chose.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Form, Response

from civicshare.errors import CivicshareError, Invalid
from civicshare.permissions import Action, Actor, authorize
from civicshare.policy import service as policy
from civicshare.policy.models import PURPOSES, QueryableTable
from civicshare.query import service as query
from civicshare.query.engine import DEFAULT_MAX_ROWS
from civicshare.query.service import QueryResult
from civicshare.web.context import FormVisitorDep, Visitor, VisitorDep
from civicshare.web.render import PortalRoute, render
from civicshare.web.results import NUMERIC_PREFIXES, ResultTable

router = APIRouter(route_class=PortalRoute, include_in_schema=False)

# Well above the query service's own limit, so that limit (with its message) is what applies;
# this one only stops a form body from tying up the server.
MAX_FORM_SQL = 1_000_000
ACTIONS = ("run", "explain")
DOWNLOAD_FORMATS = ("csv", "parquet")
TEMPORAL_PREFIXES = ("date", "timestamp")
CHART_ROWS = 200
# A page of more rows is no longer readable; downloads get the query service's own row cap.
SHOWN_ROWS = 1_000


@dataclass(frozen=True)
class ConsoleError:
    message: str
    code: str
    status: int


@dataclass(frozen=True)
class Chart:
    spec: dict[str, Any]
    title: str
    x: str
    y: str
    x_choices: list[str]
    y_choices: list[str]
    charted_rows: int


@router.get("/console")
def console_page(visitor: VisitorDep, table: str = "", purpose: str = "") -> Response:
    actor = _console_actor(visitor)
    tables = _tables(visitor, actor)
    # A dataset can be listed more than once (say, under two agreements): the purpose picks.
    matching = [t for t in tables if t.ref == table[:200]]
    chosen = next((t for t in matching if t.purpose == purpose), matching[0] if matching else None)
    if chosen is not None and purpose not in PURPOSES:
        purpose = chosen.purpose or ""
    context = _context(
        tables,
        sql=starter_sql(chosen) if chosen is not None else "",
        purpose=purpose if purpose in PURPOSES else "",
    )
    return render(visitor, "console.html", context)


@router.post("/console")
def console_run(
    visitor: FormVisitorDep,
    sql: Annotated[str, Form(max_length=MAX_FORM_SQL)] = "",
    purpose: Annotated[str, Form(max_length=200)] = "",
    action: Annotated[str, Form(max_length=20)] = "run",
    chart_x: Annotated[str, Form(max_length=300)] = "",
    chart_y: Annotated[str, Form(max_length=300)] = "",
    timeout: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    actor = _console_actor(visitor)
    tables = _tables(visitor, actor)
    context = _context(tables, sql=sql, purpose=purpose, timeout=timeout)
    explain = action == "explain"
    try:
        result = _governed(visitor, actor, sql, purpose, timeout, fmt="json", explain=explain)
    except CivicshareError as exc:
        context["error"] = ConsoleError(exc.message, exc.code, exc.status)
        # htmx swaps only successful answers in; the refusal is the content of the fragment.
        htmx = visitor.request.headers.get("hx-request") == "true"
        return render(visitor, "console.html", context, status=200 if htmx else exc.status)
    context["audit_index"] = result.audit_index
    if explain:
        context["explain"] = result.explain
    else:
        assert result.body is not None
        table = ResultTable.of(result.body, group_digits=False)
        context["result"] = table
        context["chart"] = result_chart(table, x=chart_x, y=chart_y)
    return render(visitor, "console.html", context)


@router.post("/console/download")
def console_download(
    visitor: FormVisitorDep,
    sql: Annotated[str, Form(max_length=MAX_FORM_SQL)] = "",
    purpose: Annotated[str, Form(max_length=200)] = "",
    format: Annotated[str, Form(max_length=20)] = "csv",
    timeout: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    actor = _console_actor(visitor)
    fmt = format if format in DOWNLOAD_FORMATS else "csv"
    try:
        result = _governed(visitor, actor, sql, purpose, timeout, fmt=fmt, explain=False)
    except CivicshareError as exc:
        context = _context(_tables(visitor, actor), sql=sql, purpose=purpose, timeout=timeout)
        context["error"] = ConsoleError(exc.message, exc.code, exc.status)
        return render(visitor, "console.html", context, status=exc.status)
    return Response(
        result.content or b"",
        media_type=result.media_type,
        headers={
            "Content-Disposition": f'attachment; filename="query-{result.audit_index}.{fmt}"',
            "X-Civicshare-Audit-Index": str(result.audit_index),
        },
    )


def _console_actor(visitor: Visitor) -> Actor:
    actor = visitor.require_actor()
    authorize(actor, Action.query_run)
    return actor


def _tables(visitor: Visitor, actor: Actor) -> list[QueryableTable]:
    with visitor.read() as db:
        return policy.queryable_tables(db=db, actor=actor)


def _governed(
    visitor: Visitor,
    actor: Actor,
    sql: str,
    purpose: str,
    timeout: str,
    *,
    fmt: str,
    explain: bool,
) -> QueryResult:
    if not sql.strip():
        # Not a query at all: nothing to authorise or record.
        raise Invalid("write a SQL query first", code="sql_required")
    seconds = _time_limit(timeout)
    # A unit of its own: run_query ends the read transaction before running and commits its
    # audit record here; a refusal is recorded by run_query in a transaction of its own.
    with visitor.unit() as db:
        return query.run_query(
            db=db,
            hub=visitor.hub,
            actor=actor,
            sql=sql,
            purpose=purpose or None,
            fmt=fmt,
            explain=explain,
            timeout=seconds,
            max_rows=SHOWN_ROWS if fmt == "json" else None,
        )


def _time_limit(raw: str) -> float | None:
    """The form's time limit; its range is the query service's to check."""
    if not raw.strip():
        return None
    try:
        return float(raw)
    except ValueError:
        raise Invalid(
            f"the time limit is a number of seconds, at most {query.MAX_TIMEOUT_SECONDS:g}",
            code="invalid_timeout",
        ) from None


def _context(
    tables: list[QueryableTable], *, sql: str, purpose: str, timeout: str = ""
) -> dict[str, Any]:
    return {
        "timeout": timeout[:20],
        "max_timeout": int(query.MAX_TIMEOUT_SECONDS),
        "tables": tables,
        "purposes": PURPOSES,
        "sql": sql,
        # An unknown purpose is kept (the service names it in its error) but cut to a sane size.
        "purpose": purpose[:64],
        "error": None,
        "result": None,
        "explain": None,
        "chart": None,
        "audit_index": None,
        "formats": DOWNLOAD_FORMATS,
        "shown_rows": SHOWN_ROWS,
        "download_rows": DEFAULT_MAX_ROWS,
    }


def starter_sql(table: QueryableTable) -> str:
    """A first query over a table that its terms allow (grouped counts when aggregate-only)."""
    if table.aggregate_only:
        key = table.columns[0].name if table.columns else ""
        return f"SELECT {key}, count(*) AS n\nFROM {table.ref}\nGROUP BY {key}\nORDER BY {key}"
    return f"SELECT *\nFROM {table.ref}\nLIMIT 100"


# ---------------------------------------------------------------------------- chart


def _is_numeric(column: dict[str, str]) -> bool:
    return column["type"].startswith(NUMERIC_PREFIXES)


def _is_temporal(column: dict[str, str]) -> bool:
    return column["type"].startswith(TEMPORAL_PREFIXES)


def result_chart(table: ResultTable, *, x: str = "", y: str = "") -> Chart | None:
    """Bars (categories) or a line (dates) of one numeric column against another column.

    Defaults: the first date or text column against the first numeric one. Suppressed cells
    have no value, so they are left out of the chart (the table marks them).
    """
    columns = table.columns
    names = [c["name"] for c in columns]
    y_choices = [c["name"] for c in columns if _is_numeric(c)]
    if not table.raw_rows or not y_choices:
        return None
    categories = [c["name"] for c in columns if not _is_numeric(c)]
    x_choices = categories + [n for n in y_choices if n not in categories]
    x = x if x in x_choices else (categories or names)[0]
    y = y if y in y_choices and y != x else next((n for n in y_choices if n != x), "")
    if not y:
        return None
    xi, yi = names.index(x), names.index(y)
    temporal = _is_temporal(columns[xi])
    rows = table.raw_rows[:CHART_ROWS]
    values = [{"x": row[xi], "y": row[yi]} for row in rows if row[yi] is not None]
    title = f"{y} by {x}"
    spec = _line_spec(values, x, y, title) if temporal else _bar_spec(values, x, y, title)
    return Chart(spec, title, x, y, x_choices, y_choices, len(rows))


def _base_spec(values: list[dict[str, Any]], title: str) -> dict[str, Any]:
    return {
        "$schema": "https://vega.github.io/schema/vega-lite/v6.json",
        "description": title,
        "title": title,
        "width": "container",
        "data": {"values": values},
    }


def _bar_spec(values: list[dict[str, Any]], x: str, y: str, title: str) -> dict[str, Any]:
    # Horizontal bars: long category labels stay readable, also at 320 px.
    return {
        **_base_spec([{**v, "x": str(v["x"])} for v in values], title),
        "mark": {"type": "bar", "color": "#1a4480"},
        "encoding": {
            "y": {"field": "x", "type": "nominal", "sort": None, "title": x},
            "x": {"field": "y", "type": "quantitative", "title": y},
            "tooltip": [{"field": "x", "title": x}, {"field": "y", "title": y}],
        },
    }


def _line_spec(values: list[dict[str, Any]], x: str, y: str, title: str) -> dict[str, Any]:
    return {
        **_base_spec(values, title),
        "mark": {"type": "line", "point": True, "color": "#1a4480"},
        "encoding": {
            "x": {"field": "x", "type": "temporal", "title": x},
            "y": {"field": "y", "type": "quantitative", "title": y},
            "tooltip": [
                {"field": "x", "type": "temporal", "title": x},
                {"field": "y", "title": y},
            ],
        },
    }
