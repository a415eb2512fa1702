"""`civicshare dataset ...`, `civicshare storage gc` and `civicshare key rotate`.

``dataset_app`` is the `dataset` command group; other modules (ingest) add their commands to it
with ``dataset_app.command(...)``.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer

from civicshare.agency import service as agency_service
from civicshare.catalog import service as catalog
from civicshare.catalog.models import (
    DatasetCreate,
    DatasetDetail,
    DatasetRead,
    Frequency,
    SchemaVersionRead,
    Visibility,
)
from civicshare.catalog.tableschema import read_schema_file
from civicshare.cli.agency import validated
from civicshare.cli.common import AsOpt, JsonOpt, console, emit, open_hub, unit
from civicshare.errors import Invalid
from civicshare.storage import service as storage
from civicshare.storage.models import VersionRead

dataset_app = typer.Typer(help="Datasets: register, inspect, version, purge.", no_args_is_help=True)
storage_app = typer.Typer(help="Encrypted segment storage.", no_args_is_help=True)
key_app = typer.Typer(help="Encryption keys.", no_args_is_help=True)

SchemaOpt = Annotated[
    Path,
    typer.Option("--schema", help="Table Schema JSON, or a datapackage.json (see --resource)."),
]
DATASET_COLUMNS = ["ref", "title", "visibility", "classification", "theme", "schema_version"]


@dataset_app.command("create")
def dataset_create(
    ref: Annotated[str, typer.Argument(help="AGENCY.DATASET")],
    schema: SchemaOpt,
    resource: Annotated[
        str | None, typer.Option(help="Which resource of a Data Package to take the schema from.")
    ] = None,
    title: Annotated[
        str | None, typer.Option(help="Default: the package title or the slug.")
    ] = None,
    description: Annotated[str | None, typer.Option()] = None,
    keyword: Annotated[list[str] | None, typer.Option(help="Repeat for several.")] = None,
    theme: Annotated[str | None, typer.Option()] = None,
    license: Annotated[str | None, typer.Option(help="Licence name or URL.")] = None,
    contact: Annotated[str | None, typer.Option(help="Contact email.")] = None,
    spatial: Annotated[str | None, typer.Option(help="Spatial coverage.")] = None,
    temporal_start: Annotated[str | None, typer.Option(help="Coverage start (YYYY-MM-DD).")] = None,
    temporal_end: Annotated[str | None, typer.Option(help="Coverage end (YYYY-MM-DD).")] = None,
    frequency: Annotated[Frequency | None, typer.Option()] = None,
    visibility: Annotated[Visibility, typer.Option()] = Visibility.private,
    as_email: AsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Register a dataset with its Table Schema."""
    agency, slug = catalog.parse_ref(ref)
    table_schema, package = read_schema_file(schema, resource=resource)
    data = validated(
        DatasetCreate,
        agency=agency,
        slug=slug,
        title=title or package.get("title") or slug.replace("_", " ").capitalize(),
        description=description if description is not None else package.get("description", ""),
        keywords=keyword or package.get("keywords", []),
        theme=theme,
        license=license or package.get("license"),
        contact=contact,
        spatial=spatial,
        temporal_start=temporal_start,
        temporal_end=temporal_end,
        frequency=frequency,
        visibility=visibility,
        table_schema=table_schema,
    )
    hub = open_hub()
    with unit(hub, as_email) as (db, actor):
        dataset = catalog.create_dataset(db=db, actor=actor, data=data)
        result = DatasetDetail.with_schema(dataset, table_schema)
    if as_json:
        emit(result, as_json=True)
    else:
        console.print(
            f"registered [bold]{result.ref}[/bold] ({result.visibility.value}, "
            f"{len(table_schema.fields)} fields, classification {result.classification})"
        )


@dataset_app.command("show")
def dataset_show(ref: str, as_email: AsOpt = None, as_json: JsonOpt = False) -> None:
    """Show a dataset's metadata and current schema."""
    hub = open_hub()
    with unit(hub, as_email) as (db, actor):
        dataset = catalog.get_visible_dataset(db=db, actor=actor, ref=ref)
        result = DatasetDetail.with_schema(dataset, catalog.current_schema(db=db, dataset=dataset))
    if as_json:
        emit(result, as_json=True)
        return
    for key, value in result.model_dump(mode="json", exclude={"table_schema"}).items():
        console.print(f"[bold]{key}[/bold]: {'' if value is None else value}")
    console.print("[bold]fields[/bold]:")
    for field in result.table_schema["fields"]:
        required = " required" if field["constraints"].get("required") else ""
        pii = f" pii={field['pii']}" if field.get("pii") else ""
        console.print(
            f"  {field['name']}: {field['type']} [{field['classification']}{pii}]{required}",
            highlight=False,
            markup=False,
        )


@dataset_app.command("list")
def dataset_list(
    q: Annotated[str | None, typer.Option("--q", help="Full-text search.")] = None,
    agency: Annotated[str | None, typer.Option()] = None,
    theme: Annotated[str | None, typer.Option()] = None,
    visibility: Annotated[Visibility | None, typer.Option()] = None,
    classification: Annotated[str | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 100,
    as_email: AsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List or search the datasets the acting user may see."""
    hub = open_hub()
    with unit(hub, as_email) as (db, actor):
        result = catalog.search(
            db=db,
            actor=actor,
            q=q,
            agency=agency,
            theme=theme,
            visibility=visibility.value if visibility else None,
            classification=classification,
            limit=limit,
        )
    if as_json:
        emit(result, as_json=True)
        return
    emit(result.items, as_json=False, title=f"Datasets ({result.total})", columns=DATASET_COLUMNS)


@dataset_app.command("versions")
def dataset_versions(ref: str, as_email: AsOpt = None, as_json: JsonOpt = False) -> None:
    """List a dataset's data versions."""
    hub = open_hub()
    with unit(hub, as_email) as (db, actor):
        dataset = catalog.get_visible_dataset(db=db, actor=actor, ref=ref)
        rows = [VersionRead.of(v) for v in storage.list_versions(db=db, dataset=dataset)]
    columns = ["number", "operation", "row_count", "segments", "created_at", "created_by"]
    emit(rows, as_json=as_json, title=f"Versions of {ref}", columns=columns)


@dataset_app.command("schema")
def dataset_schema(
    ref: str,
    schema: Annotated[
        Path | None, typer.Option("--schema", help="Set this new Table Schema (a new version).")
    ] = None,
    resource: Annotated[str | None, typer.Option()] = None,
    breaking: Annotated[
        bool, typer.Option("--breaking", help="Accept a breaking change (removed field, …).")
    ] = False,
    as_email: AsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a dataset's schema versions, or add one with --schema."""
    hub = open_hub()
    new = read_schema_file(schema, resource=resource)[0] if schema else None
    with unit(hub, as_email) as (db, actor):
        dataset = catalog.get_visible_dataset(db=db, actor=actor, ref=ref)
        if new is not None:
            catalog.update_schema(
                db=db, actor=actor, dataset=dataset, table_schema=new, breaking=breaking
            )
        rows = [SchemaVersionRead.of(v) for v in catalog.schema_versions(db=db, dataset=dataset)]
    if as_json:
        emit(rows, as_json=True)
        return
    columns = ["number", "schema_hash", "breaking", "changes", "created_at", "created_by"]
    emit(rows, as_json=False, title=f"Schema versions of {ref}", columns=columns)


@dataset_app.command("purge")
def dataset_purge(
    ref: str,
    yes: Annotated[
        bool, typer.Option("--yes", help="Confirm: the data becomes unrecoverable.")
    ] = False,
    as_email: AsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Crypto-shred a dataset: destroy its data key so its stored data is unreadable for good."""
    if not yes:
        raise Invalid(
            f"purging {ref} destroys its data for good; repeat with --yes to confirm",
            code="confirmation_required",
        )
    hub = open_hub()
    with unit(hub, as_email) as (db, actor):
        dataset = catalog.get_visible_dataset(db=db, actor=actor, ref=ref)
        result = DatasetRead.of(storage.purge_dataset(db=db, actor=actor, dataset=dataset))
    hub.db.flush_erased_pages()
    if as_json:
        emit(result, as_json=True)
    else:
        console.print(f"purged [bold]{ref}[/bold]: its data key is destroyed")


@storage_app.command("gc")
def storage_gc(
    apply: Annotated[
        bool, typer.Option("--apply", help="Delete the files (default: only report them).")
    ] = False,
    min_age_minutes: Annotated[
        int, typer.Option(min=0, help="Leave files younger than this (writes in flight).")
    ] = 60,
    as_email: AsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Find segment files no version references (dry run unless --apply)."""
    hub = open_hub()
    with unit(hub, as_email) as (db, actor):
        report = storage.collect_garbage(
            db=db,
            hub=hub,
            actor=actor,
            apply=apply,
            min_age=dt.timedelta(minutes=min_age_minutes),
        )
    if as_json:
        emit(report, as_json=True)
        return
    verb = "deleted" if apply else "would delete"
    console.print(
        f"{verb} {len(report.orphans)} orphan segment(s) ({report.orphan_bytes} bytes) and "
        f"{len(report.shredded)} purged segment(s) ({report.shredded_bytes} bytes); "
        f"{report.referenced} segment(s) in use"
    )


@key_app.command("rotate")
def key_rotate(
    agency: Annotated[str, typer.Option(help="Agency whose key-encryption key to rotate.")],
    as_email: AsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Rotate an agency's key-encryption key: rewrap its data keys, no data rewritten."""
    hub = open_hub()
    with unit(hub, as_email) as (db, actor):
        target = agency_service.get_agency(db=db, slug=agency)
        result = storage.rotate_agency_key(db=db, hub=hub, actor=actor, agency=target)
    if as_json:
        emit(result, as_json=True)
    else:
        console.print(
            f"agency {result.agency} now uses key version {result.version}; "
            f"{result.rewrapped_data_keys} data key(s) rewrapped"
        )


def register(app: typer.Typer) -> None:
    app.add_typer(dataset_app, name="dataset")
    app.add_typer(storage_app, name="storage")
    app.add_typer(key_app, name="key")
