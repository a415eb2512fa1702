"""`civicshare query "SQL" --purpose P [--as EMAIL] [--format ...] [--explain]`"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from civicshare.cli.common import AsOpt, console, err_console, open_hub, print_json, unit
from civicshare.query.formats import FORMATS
from civicshare.query.service import run_query


def query(
    sql: Annotated[str, typer.Argument(help="One SELECT over agency.dataset names.")],
    purpose: Annotated[str | None, typer.Option(help="The purpose the query serves.")] = None,
    fmt: Annotated[str, typer.Option("--format", help=f"One of {', '.join(FORMATS)}.")] = "json",
    output: Annotated[Path | None, typer.Option(help="Write the result to this file.")] = None,
    max_rows: Annotated[int | None, typer.Option(min=1)] = None,
    explain: Annotated[bool, typer.Option("--explain", help="Show policy and SQL only.")] = False,
    table: Annotated[bool, typer.Option("--table", help="Print JSON results as a table.")] = False,
    as_email: AsOpt = None,
) -> None:
    """Run a governed SQL query (audited, allowed or denied)."""
    hub = open_hub()
    with unit(hub, as_email) as (db, actor):
        result = run_query(
            db=db,
            hub=hub,
            actor=actor,
            sql=sql,
            purpose=purpose,
            fmt=fmt,
            max_rows=max_rows,
            explain=explain,
        )
    if result.content is not None:
        if output is None and sys.stdout.isatty() and fmt != "csv":
            err_console.print("binary output: use --output FILE or redirect stdout")
            raise typer.Exit(2)
        _write(result.content, output)
    elif table and result.body is not None:
        _print_table(result.body)
    elif output is not None:
        import json

        _write(json.dumps(result.response(), ensure_ascii=False).encode(), output)
    else:
        print_json(result.response())
    if result.truncated:
        err_console.print(f"[yellow]truncated[/yellow] after {result.rows} rows")
    if result.suppressed:
        err_console.print(f"{len(result.suppressed)} cells suppressed")
    err_console.print(f"audit record {result.audit_index}", highlight=False)


def _write(content: bytes, output: Path | None) -> None:
    if output is None:
        sys.stdout.buffer.write(content)
        sys.stdout.flush()
    else:
        output.write_bytes(content)


def _print_table(body: dict[str, object]) -> None:
    grid = Table(title_justify="left")
    for column in body["columns"]:  # type: ignore[attr-defined]
        grid.add_column(f"{column['name']}\n{column['type']}")
    for row in body["rows"]:  # type: ignore[attr-defined]
        grid.add_row(*("" if value is None else str(value) for value in row))
    console.print(grid)


def register(app: typer.Typer) -> None:
    app.command("query")(query)
