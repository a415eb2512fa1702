"""The `civicshare` command line: a thin adapter over the same services as the API."""

from __future__ import annotations

import logging
import os
import sys
from typing import Annotated

import typer

from civicshare.cli.common import HomeOpt, JsonOpt, err_console, print_json, set_home, settings
from civicshare.errors import CivicshareError

app = typer.Typer(
    help="civicshare: a secure data-sharing hub for public-sector agencies.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
db_app = typer.Typer(help="Metadata database.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@app.callback()
def root(home: HomeOpt = None) -> None:
    """Commands act on the local hub home as the hub administrator (see --as)."""
    set_home(home)


@app.command()
def init(as_json: JsonOpt = False) -> None:
    """Create a hub home: folder, master key (mode 0600) and database schema."""
    from civicshare.hub import init_home

    cfg = settings()
    hub, created = init_home(cfg)
    hub.close()
    result = {
        "home": str(cfg.home),
        "database": _redact_url(cfg.resolved_database_url),
        "storage": cfg.resolved_storage_url,
        "master_key_file": str(cfg.resolved_master_key_file),
        "master_key_created": created,
    }
    if as_json:
        print_json(result)
        return
    state = "created" if created else "kept the existing"
    err_console.print(f"hub home ready at {cfg.home} ({state} master key)")
    err_console.print("Back up the master key file: without it the stored data is unreadable.")


@db_app.command("upgrade")
def db_upgrade(as_json: JsonOpt = False) -> None:
    """Apply database migrations up to the latest."""
    from civicshare.db import current_revisions
    from civicshare.hub import Hub

    hub = Hub(settings())
    hub.db.upgrade()
    revisions = current_revisions(hub.db.engine)
    hub.close()
    if as_json:
        print_json({"revisions": list(revisions)})
    else:
        err_console.print(f"database at revision {', '.join(revisions)}")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
) -> None:
    """Serve the hub over HTTP (upgrades the database first)."""
    from civicshare.server import run_server

    run_server(settings(), host=host, port=port)


def _register_command_modules() -> None:
    """Every module of this package with a ``register(app)`` adds its commands (sorted)."""
    import importlib
    import pkgutil

    for info in sorted(pkgutil.iter_modules(__path__), key=lambda info: info.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if callable(register):
            register(app)


def _redact_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def main() -> None:
    """Entry point: user mistakes print one line and exit non-zero, never a traceback."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # Everything the hub writes (database, segments, keys, exports) is for its owner only.
    os.umask(0o077)
    try:
        app(standalone_mode=True)
    except CivicshareError as exc:
        err_console.print(
            f"[red]error[/red]: {exc.message} [dim]({exc.code})[/dim]", highlight=False
        )
        sys.exit(1)


_register_command_modules()
