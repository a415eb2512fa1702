"""`civicshare agreement share-profile ID`: a Delta Sharing profile file for an agreement."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from civicshare.cli.common import AsOpt, JsonOpt, err_console, open_hub, print_json, unit
from civicshare.errors import Invalid

DELTA_SHARING_PATH = "/delta-sharing"


def share_profile(
    agreement_id: Annotated[str, typer.Argument(help="The agreement's id (agr_…).")],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Write the profile file here (mode 0600) instead of stdout."),
    ] = None,
    name: Annotated[str, typer.Option(help="A label to recognise the profile by.")] = "cli",
    history: Annotated[
        bool,
        typer.Option(help="Let the recipient read past versions and the change data feed."),
    ] = False,
    recipient: Annotated[
        str | None,
        typer.Option(help="The recipient user, when the agreement names its recipient users."),
    ] = None,
    expires_in_days: Annotated[int | None, typer.Option(min=1, max=3650)] = None,
    as_email: AsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Issue a Delta Sharing profile for an agreement (the provider agency's steward).

    The bearer token in the file is shown only once; anyone holding the file reads the
    agreement's share until the agreement or the profile ends or is revoked.
    """
    from civicshare.cli.agency import validated
    from civicshare.sharing import profiles
    from civicshare.sharing.models import ShareProfileCreate, ShareProfileRead

    data = validated(
        ShareProfileCreate,
        name=name,
        history=history,
        recipient_email=recipient,
        expires_in_days=expires_in_days,
    )
    hub = open_hub()
    endpoint = hub.settings.public_url.rstrip("/") + DELTA_SHARING_PATH
    with unit(hub, as_email) as (db, actor):
        profile, secret = profiles.issue_agreement_profile(
            db=db, actor=actor, agreement_id=agreement_id, data=data
        )
        read = ShareProfileRead.of(profile)
        content = profiles.profile_file(profile, secret, endpoint=endpoint)
    if out is not None:
        _write_private(out, json.dumps(content, indent=2) + "\n")
        if as_json:
            print_json({"profile": read, "file": str(out)})
        else:
            err_console.print(
                f"profile [bold]{read.id}[/bold] for share {read.share}, expires "
                f"{read.expires_at}; written to {out}"
            )
        return
    print_json(content if not as_json else {"profile": read, "profile_file": content})


def _write_private(path: Path, text: str) -> None:
    if path.exists():
        raise Invalid(f"{path} already exists; choose another file", code="file_exists")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def _agreement_group(app: typer.Typer) -> typer.Typer:
    """The `agreement` command group (the policy domain's, if it registered one first)."""
    for group in app.registered_groups:
        if group.name == "agreement" and group.typer_instance is not None:
            return group.typer_instance
    group_app = typer.Typer(help="Data-sharing agreements.", no_args_is_help=True)
    app.add_typer(group_app, name="agreement")
    return group_app


def register(app: typer.Typer) -> None:
    _agreement_group(app).command("share-profile")(share_profile)
