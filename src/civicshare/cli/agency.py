"""`civicshare agency|user|token ...`"""

from __future__ import annotations

import sys
from typing import Annotated, TypeVar

import typer
from pydantic import BaseModel, ValidationError

from civicshare.agency import service
from civicshare.agency.models import (
    AgencyCreate,
    AgencyLevel,
    AgencyRead,
    PrincipalKind,
    Role,
    TokenCreate,
    TokenCreated,
    TokenRead,
    UserCreate,
    UserRead,
)
from civicshare.cli.common import AsOpt, JsonOpt, console, emit, open_hub, unit
from civicshare.errors import Invalid

M = TypeVar("M", bound=BaseModel)

agency_app = typer.Typer(help="Agencies: create and list.", no_args_is_help=True)
user_app = typer.Typer(help="Users and service accounts.", no_args_is_help=True)
token_app = typer.Typer(help="API tokens: create, list, revoke.", no_args_is_help=True)


def validated(model: type[M], **fields: object) -> M:
    """Build a request model, turning validation errors into one clear line."""
    try:
        return model(**fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "input"
        raise Invalid(f"{where}: {first['msg']}", code="validation_error") from None


@agency_app.command("create")
def agency_create(
    slug: str,
    title: Annotated[str, typer.Option(help="Human-readable name.")],
    level: Annotated[AgencyLevel, typer.Option()] = AgencyLevel.local,
    parent: Annotated[str | None, typer.Option(help="Parent agency slug.")] = None,
    contact_name: Annotated[str | None, typer.Option()] = None,
    contact_email: Annotated[str | None, typer.Option()] = None,
    as_email: AsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an agency."""
    data = validated(
        AgencyCreate,
        slug=slug,
        title=title,
        level=level,
        parent=parent,
        contact_name=contact_name,
        contact_email=contact_email,
    )
    hub = open_hub()
    with unit(hub, as_email) as (db, actor):
        result = AgencyRead.of(service.create_agency(db=db, actor=actor, data=data))
    emit(result, as_json=as_json)


@agency_app.command("list")
def agency_list(as_email: AsOpt = None, as_json: JsonOpt = False) -> None:
    """List agencies."""
    hub = open_hub()
    with unit(hub, as_email) as (db, actor):
        rows = [AgencyRead.of(a) for a in service.list_agencies(db=db, actor=actor)]
    emit(rows, as_json=as_json, title="Agencies", columns=["slug", "title", "level", "parent"])


@user_app.command("create")
def user_create(
    email: str,
    role: Annotated[Role, typer.Option()],
    agency: Annotated[str | None, typer.Option(help="Agency slug (all roles but admin).")] = None,
    name: Annotated[str | None, typer.Option(help="Display name (default: the email).")] = None,
    service_account: Annotated[
        bool, typer.Option("--service", help="A service account (tokens only, no password).")
    ] = False,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the portal password from stdin.")
    ] = False,
    as_email: AsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a user or service account."""
    password = sys.stdin.readline().rstrip("\n") if password_stdin else None
    data = validated(
        UserCreate,
        email=email,
        display_name=name or email,
        role=role,
        agency=agency,
        kind=PrincipalKind.service if service_account else PrincipalKind.person,
        password=password,
    )
    hub = open_hub()
    with unit(hub, as_email) as (db, actor):
        result = UserRead.of(service.create_user(db=db, actor=actor, data=data))
    emit(result, as_json=as_json)


@user_app.command("list")
def user_list(
    agency: Annotated[str | None, typer.Option(help="Only this agency.")] = None,
    as_email: AsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List users."""
    hub = open_hub()
    with unit(hub, as_email) as (db, actor):
        rows = [UserRead.of(u) for u in service.list_users(db=db, actor=actor, agency=agency)]
    columns = ["email", "display_name", "role", "agency", "kind", "is_active"]
    emit(rows, as_json=as_json, title="Users", columns=columns)


@token_app.command("create")
def token_create(
    user: Annotated[str | None, typer.Option(help="Whose token (default: the --as user).")] = None,
    name: Annotated[str, typer.Option(help="A label to recognise the token by.")] = "cli",
    expires_in_days: Annotated[int | None, typer.Option(min=1, max=3650)] = None,
    scope: Annotated[list[str] | None, typer.Option(help="Restrict to these scopes.")] = None,
    as_email: AsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an API token. The token is printed once and never stored in clear."""
    data = validated(
        TokenCreate, name=name, user=user, expires_in_days=expires_in_days, scopes=scope
    )
    hub = open_hub()
    with unit(hub, as_email) as (db, actor):
        token, secret = service.create_token(
            db=db, actor=actor, data=data, default_ttl_days=hub.settings.token_ttl_days
        )
        result = TokenCreated(**TokenRead.of(token).model_dump(), token=secret)
    if as_json:
        emit(result, as_json=True)
        return
    console.print(f"token [bold]{result.id}[/bold] for {result.user}, expires {result.expires_at}")
    console.print("Store it now; it is not shown again:")
    sys.stdout.write(secret + "\n")


@token_app.command("list")
def token_list(
    user: Annotated[str | None, typer.Option(help="Only this user's tokens.")] = None,
    as_email: AsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List tokens (never their secrets)."""
    hub = open_hub()
    with unit(hub, as_email) as (db, actor):
        rows = [TokenRead.of(t) for t in service.list_tokens(db=db, actor=actor, email=user)]
    columns = ["id", "name", "user", "expires_at", "last_used_at", "revoked_at"]
    emit(rows, as_json=as_json, title="Tokens", columns=columns)


@token_app.command("revoke")
def token_revoke(token_id: str, as_email: AsOpt = None, as_json: JsonOpt = False) -> None:
    """Revoke a token at once."""
    hub = open_hub()
    with unit(hub, as_email) as (db, actor):
        result = TokenRead.of(service.revoke_token(db=db, actor=actor, token_id=token_id))
    emit(result, as_json=as_json)


def register(app: typer.Typer) -> None:
    app.add_typer(agency_app, name="agency")
    app.add_typer(user_app, name="user")
    app.add_typer(token_app, name="token")
