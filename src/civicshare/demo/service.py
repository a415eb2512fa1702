"""Setting up a hub home with the sample city and writing its demo credentials."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from civicshare.agency import service as agency_service
from civicshare.agency.models import (
    Agency,
    AgencyCreate,
    AgencyLevel,
    Role,
    TokenCreate,
    User,
    UserCreate,
)
from civicshare.demo.city import generate_city
from civicshare.hub import Hub
from civicshare.permissions import CLI_ADMIN

CREDENTIALS_FILE = "demo-credentials.json"
DEMO_DOMAIN = "demo-city.org"


@dataclass(frozen=True)
class DemoAgency:
    slug: str
    title: str
    level: AgencyLevel = AgencyLevel.local


DEMO_AGENCIES = (
    DemoAgency("health", "Department of Public Health"),
    DemoAgency("fire_ems", "Fire and Emergency Medical Services"),
    DemoAgency("police", "Police Department"),
    DemoAgency("housing", "Housing Authority"),
    DemoAgency("transport", "Department of Transportation"),
)


@dataclass(frozen=True)
class DemoLogin:
    email: str
    password: str
    role: str
    agency: str | None
    token: str


def demo_users() -> list[tuple[str, Role, str | None]]:
    """(email, role, agency) for every demo login: an admin, an auditor, staff per agency."""
    users: list[tuple[str, Role, str | None]] = [
        (f"admin@{DEMO_DOMAIN}", Role.admin, None),
        (f"auditor@{DEMO_DOMAIN}", Role.auditor, "health"),
    ]
    for agency in DEMO_AGENCIES:
        users.append((f"steward.{agency.slug}@{DEMO_DOMAIN}", Role.steward, agency.slug))
        users.append((f"analyst.{agency.slug}@{DEMO_DOMAIN}", Role.analyst, agency.slug))
    return users


Progress = Callable[[str], None]


def setup_city(
    hub: Hub, *, people: int = 20_000, seed: int = 2026, progress: Progress | None = None
) -> list[DemoLogin]:
    """Create the demo agencies, logins and city once; later runs reuse what exists."""
    say = progress or _quiet
    logins = _ensure_logins(hub, say)
    say(f"Generating the sample city: {people:,} residents (seed {seed})")
    city = generate_city(people=people, seed=seed)
    counts = ", ".join(f"{rs.ref} {rs.table.num_rows:,}" for rs in city.record_sets)
    say(f"Person-level records: {counts}")
    return logins


def _quiet(_message: str) -> None:
    return None


def _ensure_logins(hub: Hub, say: Progress) -> list[DemoLogin]:
    path = credentials_path(hub)
    with hub.db.session() as db:
        if path.exists() and _agencies_exist(db):
            say("Reusing the demo agencies and logins")
            return read_credentials(path)
        say("Creating the demo agencies and logins")
        _create_agencies(db)
        logins = _create_logins(db, ttl_days=hub.settings.token_ttl_days)
    write_credentials(path, logins)
    return logins


def credentials_path(hub: Hub) -> Path:
    return hub.settings.home / CREDENTIALS_FILE


def _agencies_exist(db: Session) -> bool:
    slugs = set(db.scalars(select(Agency.slug)))
    return all(agency.slug in slugs for agency in DEMO_AGENCIES)


def _create_agencies(db: Session) -> None:
    for agency in DEMO_AGENCIES:
        if db.scalar(select(Agency.id).where(Agency.slug == agency.slug)) is None:
            agency_service.create_agency(
                db=db,
                actor=CLI_ADMIN,
                data=AgencyCreate(
                    slug=agency.slug,
                    title=agency.title,
                    level=agency.level,
                    contact_email=f"data@{agency.slug.replace('_', '-')}.{DEMO_DOMAIN}",
                ),
            )


def _create_logins(db: Session, *, ttl_days: int) -> list[DemoLogin]:
    logins = []
    for email, role, agency in demo_users():
        password = secrets.token_urlsafe(12)
        user = db.scalar(select(User).where(User.email == email))
        if user is None:
            name = email.split("@")[0].replace(".", " ").replace("_", " ").title()
            agency_service.create_user(
                db=db,
                actor=CLI_ADMIN,
                data=UserCreate(
                    email=email, display_name=name, role=role, agency=agency, password=password
                ),
            )
        else:
            agency_service.set_password(db=db, actor=CLI_ADMIN, email=email, password=password)
        _token, secret = agency_service.create_token(
            db=db,
            actor=CLI_ADMIN,
            data=TokenCreate(name="demo", user=email),
            default_ttl_days=ttl_days,
        )
        logins.append(DemoLogin(email, password, role.value, agency, secret))
    return logins


def write_credentials(path: Path, logins: list[DemoLogin]) -> None:
    """Write the demo logins with mode 0600 (they are real credentials for this hub)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"users": [asdict(login) for login in logins]}, handle, indent=2)
    tmp.replace(path)
    path.chmod(0o600)


def read_credentials(path: Path) -> list[DemoLogin]:
    data = json.loads(path.read_text())
    return [DemoLogin(**entry) for entry in data["users"]]
