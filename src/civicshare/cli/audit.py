"""`civicshare audit verify|prove|log|key|checkpoint`"""

from __future__ import annotations

import base64
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from civicshare.audit import service
from civicshare.audit.note import NoteError, Verifier
from civicshare.audit.verifier import HttpLogSource, LogSource, prove_inclusion, verify_log
from civicshare.cli.common import AsOpt, JsonOpt, console, err_console, open_hub, print_json, unit
from civicshare.errors import Invalid
from civicshare.hub import Hub
from civicshare.permissions import CLI_ADMIN

audit_app = typer.Typer(help="The verifiable audit log.", no_args_is_help=True)

UrlOpt = Annotated[
    str | None,
    typer.Option("--url", help="Hub base URL (default: read the local hub home directly)."),
]
KeyOpt = Annotated[
    str, typer.Option("--key", help="The hub's verifier key: name+keyid+base64 (audit key).")
]
TokenOpt = Annotated[
    str | None,
    typer.Option("--token", envvar="CIVICSHARE_TOKEN", help="API token (an auditor's, to verify)."),
]


class LocalLogSource:
    """The log of a local hub home, read as the hub administrator."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def checkpoint(self) -> str:
        with self.hub.db.session() as db:
            return service.checkpoint(db, self.hub).note

    def entries(self, start: int, end: int) -> list[tuple[int, bytes]]:
        with self.hub.db.session() as db:
            page = service.entries(db, actor=CLI_ADMIN, start=start, end=end)
        return [(e.index, base64.b64decode(e.leaf_input)) for e in page.entries]

    def inclusion(self, index: int, size: int) -> list[bytes]:
        with self.hub.db.session() as db:
            proof = service.inclusion_proof(db, index=index, size=size)
        return [base64.b64decode(value) for value in proof.audit_path]

    def consistency(self, first: int, second: int) -> list[bytes]:
        with self.hub.db.session() as db:
            proof = service.consistency_proof(db, first=first, second=second)
        return [base64.b64decode(value) for value in proof.consistency]


def _source(url: str | None, token: str | None) -> LogSource:
    return HttpLogSource(url, token) if url else LocalLogSource(open_hub())


def _verifier(key: str) -> Verifier:
    try:
        return Verifier.parse(key)
    except NoteError as exc:
        raise Invalid(f"--key: {exc}", code="bad_key") from exc


@audit_app.command("verify")
def verify(
    key: KeyOpt,
    url: UrlOpt = None,
    state: Annotated[
        Path | None,
        typer.Option(help="Remember the accepted checkpoint here; later runs check consistency."),
    ] = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Check every record against the signed checkpoint; name the first bad one."""
    verifier = _verifier(key)
    verdict = verify_log(_source(url, token), verifier, state=state)
    if as_json:
        print_json(verdict.as_dict())
    elif verdict.ok:
        console.print(f"[green]verified[/green]: {verdict.message}; root {verdict.root}")
    else:
        bad = verdict.first_bad_index
        where = "" if bad is None else f" (first bad index: {bad})"
        err_console.print(f"[red]FAILED[/red] {verdict.problem}: {verdict.message}{where}")
    if not verdict.ok:
        raise typer.Exit(1)


@audit_app.command("prove")
def prove(
    index: int,
    key: Annotated[
        str | None, typer.Option("--key", help="Verifier key (default: the local hub's own).")
    ] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Print and check the inclusion proof of record INDEX in the latest signed checkpoint."""
    if key is None and url is not None:
        raise Invalid("--key is required with --url", code="key_required")
    source = _source(url, token)
    if key is None:
        assert isinstance(source, LocalLogSource)
        with source.hub.db.session() as db:
            verifier = service.verifier(db)
    else:
        verifier = _verifier(key)
    checkpoint, record, path = prove_inclusion(source, verifier, index)
    result = {
        "leaf_index": index,
        "tree_size": checkpoint.size,
        "root": base64.b64encode(checkpoint.root).decode(),
        "audit_path": [base64.b64encode(value).decode() for value in path],
        "record": json.loads(record),
        "verified": True,
    }
    if as_json:
        print_json(result)
        return
    console.print(f"record {index} is in the signed log of {checkpoint.size} records")
    console.print(f"root {result['root']}")
    for value in result["audit_path"]:
        console.print(f"  {value}")


@audit_app.command("log")
def log_command(
    action: Annotated[str | None, typer.Option(help="An action, or a domain like 'token'.")] = None,
    actor: Annotated[str | None, typer.Option(help="The acting user's email.")] = None,
    agency: Annotated[str | None, typer.Option(help="Records about this agency.")] = None,
    outcome: Annotated[str | None, typer.Option(help="allowed or denied.")] = None,
    resource: Annotated[str | None, typer.Option(help="e.g. agency.dataset")] = None,
    since: Annotated[dt.datetime | None, typer.Option(help="From this UTC time.")] = None,
    until: Annotated[dt.datetime | None, typer.Option(help="Before this UTC time.")] = None,
    before: Annotated[int | None, typer.Option(help="Only records before this index.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=service.MAX_RECORDS_PER_PAGE)] = 50,
    as_email: AsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List records, newest first (what the acting user may read)."""
    where = service.RecordFilter(
        action=action,
        actor=actor,
        agency=agency,
        outcome=outcome,
        resource=resource,
        since=since.replace(tzinfo=dt.UTC) if since and since.tzinfo is None else since,
        until=until.replace(tzinfo=dt.UTC) if until and until.tzinfo is None else until,
    )
    hub = open_hub()
    with unit(hub, as_email) as (db, acting):
        page = service.list_records(db, actor=acting, where=where, before=before, limit=limit)
    if as_json:
        print_json(page)
        return
    for item in page.records:
        body = item.record
        who = (body.get("actor") or {}).get("email", "-")
        console.print(
            f"{item.index:>8}  {body.get('time', '')}  {body.get('action', '')}  "
            f"{body.get('outcome', '')}  {who}  {body.get('agency') or '-'}  "
            f"{body.get('resource') or ''}  {body.get('reason') or ''}",
            highlight=False,
            markup=False,
        )


@audit_app.command("key")
def key_command() -> None:
    """Print the local hub's verifier key (publish it for auditors)."""
    hub = open_hub()
    with hub.db.session() as db:
        service.ensure_signing_key(db, hub)
        sys.stdout.write(f"{service.verifier(db)}\n")


@audit_app.command("checkpoint")
def checkpoint_command() -> None:
    """Sign (if the log grew) and print the latest checkpoint of the local hub."""
    hub = open_hub()
    with hub.db.session() as db:
        sys.stdout.write(service.checkpoint(db, hub).note)


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")
