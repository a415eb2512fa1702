"""What every CLI command shares: loading the hub, acting as someone, printing results."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table
from sqlalchemy.orm import Session

from civicshare.agency import service as agency_service
from civicshare.config import Settings, load_settings
from civicshare.hub import Hub
from civicshare.permissions import CLI_ADMIN, Actor

console = Console()
err_console = Console(stderr=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
AsOpt = Annotated[
    str | None,
    typer.Option("--as", help="Act as this user (recorded as the administrator acting as them)."),
]
HomeOpt = Annotated[
    Path | None,
    typer.Option("--home", help="Hub home folder (default: $CIVICSHARE_HOME or ./.civicshare)."),
]

_state: dict[str, Any] = {"home": None}


def set_home(home: Path | None) -> None:
    _state["home"] = home


def settings(**overrides: Any) -> Settings:
    if _state["home"] is not None and "home" not in overrides:
        overrides["home"] = _state["home"]
    return load_settings(**overrides)


def open_hub(**overrides: Any) -> Hub:
    """The local hub, its schema brought up to date."""
    from civicshare.hub import init_home

    cfg = settings(**overrides)
    if not cfg.home.exists() and not cfg.database_url:
        from civicshare.errors import ConfigurationError

        raise ConfigurationError(f"no hub home at {cfg.home}; create one with `civicshare init`")
    hub, _created = init_home(cfg) if cfg.demo else (Hub(cfg), False)
    hub.db.upgrade()
    return hub


@contextmanager
def unit(hub: Hub, as_email: str | None = None) -> Iterator[tuple[Session, Actor]]:
    """One CLI command's transaction, with the acting principal."""
    with hub.db.session() as db:
        actor = CLI_ADMIN
        if as_email:
            actor = agency_service.act_as(db=db, admin=CLI_ADMIN, email=as_email)
        yield db, actor


def to_jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [to_jsonable(item) for item in value]
    if isinstance(value, dict):
        return {key: to_jsonable(item) for key, item in value.items()}
    return value


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(to_jsonable(value), indent=2, default=str) + "\n")


def print_table(title: str, rows: Sequence[BaseModel], columns: Sequence[str]) -> None:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column)
    for row in rows:
        data = row.model_dump(mode="json")
        table.add_row(*("" if data.get(c) is None else str(data.get(c)) for c in columns))
    console.print(table)


def emit(value: Any, *, as_json: bool, title: str = "", columns: Sequence[str] = ()) -> None:
    """Print a result as JSON or as a readable table/line."""
    if as_json:
        print_json(value)
    elif isinstance(value, list) and columns:
        print_table(title, value, columns)
    elif isinstance(value, BaseModel):
        for key, item in value.model_dump(mode="json").items():
            console.print(f"[bold]{key}[/bold]: {item}")
    else:
        console.print(value)
