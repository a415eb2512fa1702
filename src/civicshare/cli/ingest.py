"""`civicshare dataset infer|ingest|ingests`: commands added to the `dataset` group."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from civicshare.cli.common import AsOpt, JsonOpt, console, err_console, open_hub, print_json, unit
from civicshare.cli.dataset import dataset_app

FileArg = Annotated[
    Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="The data file.")
]
RefArg = Annotated[str, typer.Argument(help="The dataset, as AGENCY.DATASET.")]


def infer(
    file: FileArg,
    sample_rows: Annotated[int, typer.Option(min=1, help="Rows to sample.")] = 100_000,
    as_json: JsonOpt = False,
) -> None:
    """Propose a Table Schema for FILE: types, formats, enums, keys and PII hints."""
    from civicshare.ingest.infer import infer_schema

    schema = infer_schema(file, sample_rows=sample_rows)
    if as_json:
        print_json(
            schema.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_defaults=True)
        )
        return
    table = Table(title=f"Proposed schema for {file.name}", title_justify="left")
    for column in ("name", "title", "type", "format", "classification", "pii", "constraints"):
        table.add_column(column)
    for field in schema.fields:
        constraints = field.constraints.model_dump(exclude_defaults=True)
        table.add_row(
            field.name,
            field.title or "",
            field.type,
            "" if field.format == "default" else field.format,
            field.classification,
            field.pii or "",
            _short(constraints),
        )
    console.print(table)
    if schema.primaryKey:
        console.print(f"primary key: {', '.join(schema.primaryKey)}")
    console.print(f"missing values: {schema.missingValues}")
    err_console.print("Review it, then save it with --json and register it with `dataset create`.")


def _short(constraints: dict[str, Any]) -> str:
    if "enum" in constraints:
        values = [str(v) for v in constraints["enum"]]
        shown = ", ".join(values[:6]) + (f", … ({len(values)})" if len(values) > 6 else "")
        return f"enum: {shown}"
    return ", ".join(f"{k}={v}" for k, v in constraints.items())


def ingest(
    ref: RefArg,
    file: FileArg,
    mode: Annotated[str, typer.Option(help="append | replace | upsert | delete")] = "append",
    key: Annotated[
        str | None, typer.Option(help="Key columns for upsert/delete, comma-separated.")
    ] = None,
    max_error_rate: Annotated[
        float, typer.Option(help="Reject the whole file above this share of bad rows.")
    ] = 0.05,
    as_user: AsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Validate FILE against the dataset's schema and store it as a new version."""
    from civicshare.catalog import service as catalog
    from civicshare.ingest import service as ingest_service

    keys = [k.strip() for k in key.split(",") if k.strip()] if key else None
    hub = open_hub()
    try:
        with unit(hub, as_user) as (db, actor), _progress(file, quiet=as_json) as progress:
            dataset = catalog.get_visible_dataset(db=db, actor=actor, ref=ref)
            report = ingest_service.ingest_file(
                db=db,
                hub=hub,
                actor=actor,
                dataset=dataset,
                source=file,
                filename=file.name,
                mode=mode,
                key=keys,
                max_error_rate=max_error_rate,
                progress=progress,
            )
    finally:
        hub.close()
    if as_json:
        print_json(report)
    else:
        _summary(report)
    if report.status != "stored":
        sys.exit(2)


class _Bar:
    """A rich progress bar over bytes read, showing rows and MB/s."""

    def __init__(self, file: Path, quiet: bool) -> None:
        self.size = file.stat().st_size
        self.quiet = quiet
        self.started = time.perf_counter()
        self.progress = Progress(
            TextColumn("[bold]ingest[/bold]"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[rows]:,} rows"),
            TextColumn("{task.fields[rate]:.1f} MB/s"),
            TimeElapsedColumn(),
            console=err_console,
            disable=quiet or not err_console.is_terminal,
        )
        self.task = self.progress.add_task("ingest", total=self.size, rows=0, rate=0.0)

    def __enter__(self) -> _Bar:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def __call__(self, rows: int, bytes_read: int) -> None:
        elapsed = max(time.perf_counter() - self.started, 1e-6)
        self.progress.update(
            self.task, completed=bytes_read, rows=rows, rate=bytes_read / elapsed / 1e6
        )


def _progress(file: Path, *, quiet: bool) -> _Bar:
    return _Bar(file, quiet)


def _summary(report: Any) -> None:
    colour = "green" if report.status == "stored" else "red"
    version = f"version {report.version}" if report.version else "nothing stored"
    console.print(
        f"[{colour}]{report.status}[/{colour}] {report.dataset}: {version} "
        f"({report.mode}, {report.details.get('seconds', 0):.1f}s)"
    )
    console.print(
        f"rows read {report.rows_read:,} · accepted {report.rows_accepted:,} · "
        f"rejected {report.rows_rejected:,} ({report.error_rate:.2%}, "
        f"limit {report.max_error_rate:.2%})"
    )
    failing = {rule: n for rule, n in report.errors_by_rule.items() if n}
    if failing:
        table = Table(title="errors by rule", title_justify="left")
        table.add_column("rule")
        table.add_column("count", justify="right")
        for rule, count in failing.items():
            table.add_row(rule, f"{count:,}")
        console.print(table)
        for rejection in report.rejections[:10]:
            console.print(
                f"  row {rejection.row}: {rejection.field or '-'} "
                f"[{rejection.rule}] {rejection.message}",
                highlight=False,
            )
        if report.rows_rejected > 10:
            console.print(f"  … see `civicshare dataset ingests {report.dataset} {report.id}`")
    console.print(f"[dim]ingest id {report.id}[/dim]")


def ingests(
    ref: RefArg,
    ingest_id: Annotated[
        str | None, typer.Argument(help="One ingest, with its quarantine.")
    ] = None,
    as_user: AsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List a dataset's ingests, or show one with its quarantined rows."""
    from civicshare.catalog import service as catalog
    from civicshare.ingest import service as ingest_service

    hub = open_hub()
    try:
        with unit(hub, as_user) as (db, actor):
            dataset = catalog.get_visible_dataset(db=db, actor=actor, ref=ref)
            if ingest_id is None:
                reports = ingest_service.list_ingests(db=db, actor=actor, dataset=dataset)
                if as_json:
                    print_json(reports)
                    return
                table = Table(title=f"ingests of {ref}", title_justify="left")
                for column in (
                    "id",
                    "started",
                    "mode",
                    "status",
                    "version",
                    "accepted",
                    "rejected",
                ):
                    table.add_column(column)
                for r in reports:
                    table.add_row(
                        r.id,
                        r.started_at.isoformat(timespec="seconds"),
                        r.mode,
                        r.status,
                        str(r.version or ""),
                        f"{r.rows_accepted:,}",
                        f"{r.rows_rejected:,}",
                    )
                console.print(table)
                return
            detail = ingest_service.get_ingest(
                db=db, hub=hub, actor=actor, dataset=dataset, ingest_id=ingest_id
            )
    finally:
        hub.close()
    if as_json:
        print_json(detail)
        return
    _summary(detail)
    for row in detail.quarantine:
        console.print(
            f"  row {row.row} {row.field or '-'} [{row.rule}]: {row.value!r}", highlight=False
        )


def register(app: typer.Typer) -> None:
    # `app` already holds the catalog's `dataset` group (cli/dataset.py registers first).
    dataset_app.command("infer")(infer)
    dataset_app.command("ingest")(ingest)
    dataset_app.command("ingests")(ingests)
