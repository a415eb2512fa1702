"""`civicshare demo`: the sample city, ready to explore."""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from civicshare.cli.common import JsonOpt, err_console, print_json, settings
from civicshare.cli.sharing import DELTA_SHARING_PATH
from civicshare.demo.service import DemoLogin, DemoShare


def demo(
    home: Annotated[Path | None, typer.Option(help="Hub home for the demo.")] = None,
    port: Annotated[int, typer.Option(help="Port to serve on.")] = 8000,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    people: Annotated[int, typer.Option(min=100, help="Residents in the sample city.")] = 20_000,
    seed: Annotated[int, typer.Option(help="Seed of the sample city.")] = 2026,
    realdata: Annotated[
        Path | None,
        typer.Option(
            help="Folder of real open-data files to load "
            "(default: $CIVICSHARE_REALDATA or ../shared/realdata).",
        ),
    ] = None,
    no_realdata: Annotated[
        bool, typer.Option("--no-realdata", help="Leave the real open-data files out.")
    ] = False,
    setup_only: Annotated[
        bool, typer.Option("--setup-only", help="Prepare the home and exit without serving.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Create (once) a hub with the sample city, print its logins, and serve it."""
    from civicshare.demo.service import credentials_path, ensure_share_profile, setup_city
    from civicshare.hub import init_home
    from civicshare.server import run_server

    overrides: dict[str, object] = {"demo": True}
    if home is not None:
        overrides["home"] = home
    if "CIVICSHARE_PUBLIC_URL" not in os.environ:
        # Links the hub hands out (profile files, DCAT, ODRL) point where this demo listens.
        overrides["public_url"] = f"http://{_reachable(host)}:{port}"
    cfg = settings(**overrides)
    hub, _created = init_home(cfg)
    with err_console.status("Building the sample city…") as status:

        def progress(message: str) -> None:
            status.update(f"{message}…")
            err_console.print(f"[dim]·[/dim] {message}")

        logins = setup_city(
            hub,
            people=people,
            seed=seed,
            progress=progress,
            realdata=realdata,
            load_realdata=not no_realdata,
        )
        share = ensure_share_profile(hub, endpoint=cfg.public_url.rstrip("/") + DELTA_SHARING_PATH)
    hub.close()
    if as_json:
        print_json(
            {
                "home": str(cfg.home),
                "credentials_file": str(credentials_path(hub)),
                "share_profile_file": str(share.path) if share else None,
                "shared_case_feed": share.table_url("health.cases") if share else None,
                "url": f"http://{host}:{port}",
                "users": [asdict(login) for login in logins],
            }
        )
    else:
        _print_logins(logins, credentials_path(hub), host, port)
        _print_share_profile(share)
    if not setup_only:
        run_server(cfg, host=host, port=port)


def _print_logins(logins: list[DemoLogin], credentials: Path, host: str, port: int) -> None:
    table = Table(title="Demo logins", title_justify="left")
    for column in ("email", "role", "agency", "password"):
        table.add_column(column)
    for login in logins:
        table.add_row(login.email, login.role, login.agency or "(hub)", login.password)
    err_console.print(table)
    admin = next(login for login in logins if login.role == "admin")
    err_console.print(f"Tokens for every login are in {credentials} (mode 0600).")
    err_console.print(f"Admin API token: [bold]{admin.token}[/bold]")
    err_console.print(
        f"Try: curl -H 'Authorization: Bearer {admin.token}' http://{host}:{port}/api/v1/agencies",
        soft_wrap=True,
    )
    err_console.print(f"Open http://{host}:{port} in a browser.")


def _reachable(host: str) -> str:
    """The address a local client uses for a server bound to ``host``."""
    wildcard = {"0.0.0.0", "::", ""}  # noqa: S104 - recognising it, not binding to it
    return "127.0.0.1" if host in wildcard else host


def _print_share_profile(share: DemoShare | None) -> None:
    if share is None:
        err_console.print("No Delta Sharing profile: the EMS case-feed agreement is not active.")
        return
    err_console.print(
        "Delta Sharing profile of fire/EMS (masked recent health cases, and open data): "
        f"{share.path}",
        soft_wrap=True,
    )
    err_console.print(
        "Try, with the official client (pip install delta-sharing): "
        'python -c "import delta_sharing; '
        f"print(delta_sharing.load_as_pandas('{share.table_url('health.cases')}'))\"",
        soft_wrap=True,
        markup=False,
    )


def register(app: typer.Typer) -> None:
    app.command(name="demo")(demo)
