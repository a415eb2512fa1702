"""Setting up a hub home with the sample city and writing its demo credentials."""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from civicshare import crypto
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
from civicshare.catalog import service as catalog
from civicshare.catalog.models import Dataset, DatasetCreate, Frequency, Visibility
from civicshare.catalog.tableschema import TableSchema
from civicshare.db import utcnow
from civicshare.demo.city import (
    CITY_AS_OF,
    RECORD_SET_SPECS,
    RECORDS_FROM,
    RecordSet,
    generate_city,
)
from civicshare.demo.realdata import (
    REAL_DATASETS,
    dataset_create,
    default_realdata_dir,
    reviewed_schema,
)
from civicshare.errors import NotFound
from civicshare.hub import Hub
from civicshare.ingest import service as ingest
from civicshare.permissions import CLI_ADMIN
from civicshare.policy import service as policy
from civicshare.policy.models import AgreementRequest, DatasetGrant, State
from civicshare.sharing import profiles
from civicshare.sharing.models import ShareProfile, ShareProfileCreate, share_name
from civicshare.storage import service as storage

CREDENTIALS_FILE = "demo-credentials.json"
SHARE_PROFILE_FILE = "demo-fire_ems.share"
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
    hub: Hub,
    *,
    people: int = 20_000,
    seed: int = 2026,
    progress: Progress | None = None,
    datasets: bool = True,
    realdata: Path | None = None,
    load_realdata: bool = True,
) -> list[DemoLogin]:
    """Create the demo agencies, logins, datasets and agreements once; later runs reuse them.

    Each dataset is stored in a transaction of its own, so an interrupted setup resumes where
    it stopped. ``datasets=False`` stops after the agencies and logins (test hubs whose tests
    publish datasets of their own). ``realdata`` is the folder of real open-data files (default:
    see ``default_realdata_dir``); ``load_realdata=False`` leaves them out.
    """
    say = progress or _quiet
    logins = _ensure_logins(hub, say)
    if datasets:
        _load_person_records(hub, people=people, seed=seed, say=say)
        if load_realdata:
            _load_real_datasets(hub, root=realdata or default_realdata_dir(), say=say)
        _ensure_agreements(hub, say)
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


def _load_person_records(hub: Hub, *, people: int, seed: int, say: Progress) -> None:
    with hub.db.session() as db:
        pending = [spec for spec in RECORD_SET_SPECS if _version_count(db, spec.ref) == 0]
    if not pending:
        say("Reusing the sample city's person-level datasets")
        return
    say(f"Generating the sample city: {people:,} residents (seed {seed})")
    city = generate_city(people=people, seed=seed)
    for spec in pending:
        record_set = city.record_set(spec.ref)
        with hub.db.session() as db:
            dataset = _ensure_dataset(db, _record_set_create(record_set))
            stored = catalog.current_schema(db=db, dataset=dataset).arrow_schema()
            table = record_set.table.cast(stored)
            storage.write_version(
                db=db,
                hub=hub,
                actor=CLI_ADMIN,
                dataset=dataset,
                batches=table.to_batches(max_chunksize=50_000),
                schema=stored,
                keep_previous=False,
                operation="replace",
                details={"source": "sample city generator", "people": people, "seed": seed},
            )
        say(f"Stored {spec.ref}: {table.num_rows:,} person-level records")


def _record_set_create(record_set: RecordSet) -> DatasetCreate:
    return DatasetCreate(
        agency=record_set.agency,
        slug=record_set.slug,
        title=record_set.title,
        description=record_set.description,
        keywords=list(record_set.keywords),
        theme=record_set.theme,
        license="Synthetic data generated by civicshare (Apache-2.0)",
        contact=agency_contact(record_set.agency),
        spatial="San Francisco, CA",
        temporal_start=RECORDS_FROM,
        temporal_end=CITY_AS_OF,
        frequency=Frequency.daily,
        visibility=Visibility(record_set.visibility),
        table_schema=TableSchema.model_validate(record_set.table_schema),
    )


def demo_agreements(now: dt.datetime) -> list[AgreementRequest]:
    """Scenario 1 (aggregate-only disease counts for EMS), 2 (pseudonymised linkage), and the
    row-level, masked case feed that EMS reads with its own tools over Delta Sharing."""
    window = {"valid_from": now - dt.timedelta(minutes=5), "valid_until": now + YEAR}
    return [
        AgreementRequest(
            title="Reportable disease counts by ZIP for EMS planning",
            recipient="fire_ems",
            purpose="public_health_surveillance",
            legal_basis="Health and Safety Code §120175 (communicable disease control)",
            datasets=[
                DatasetGrant(
                    dataset="health.cases",
                    columns={
                        "zip": "clear",
                        "diagnosis_category": "clear",
                        "report_date": "clear",
                        "age_band": "clear",
                    },
                )
            ],
            aggregate_only=True,
            allow_sensitive=True,
            sensitive_justification="Counts by diagnosis category decide crews' protective "
            "equipment; only aggregates with small cells suppressed are released",
            **window,
        ),
        AgreementRequest(
            title="Housing applicants, pseudonymised, for the health support programme",
            recipient="health",
            purpose="service_delivery",
            legal_basis="Data-sharing memorandum between the Housing Authority and Public Health",
            datasets=[
                DatasetGrant(
                    dataset="housing.applications",
                    columns={
                        "national_id": "pseudonym",
                        "family_name": "pseudonym",
                        "date_of_birth": "year_only",
                        "zip": "clear",
                        "programme": "clear",
                        "status": "clear",
                        "submitted_on": "clear",
                    },
                )
            ],
            **window,
        ),
        AgreementRequest(
            title=EMS_CASE_FEED,
            recipient="fire_ems",
            purpose="emergency_response",
            legal_basis="HIPAA 45 CFR 164.512(j): averting a serious threat to health or safety",
            datasets=[
                DatasetGrant(
                    dataset="health.cases",
                    columns={
                        "case_id": "pseudonym",
                        "report_date": "clear",
                        "diagnosis_category": "clear",
                        "age_band": "clear",
                        "date_of_birth": "year_only",
                        "zip": "clear",
                    },
                    # Crews plan for what is circulating now, not for last year's cases.
                    row_filter=f"report_date >= DATE '{CITY_AS_OF - RECENT_CASES}'",
                )
            ],
            allow_history=True,
            allow_sensitive=True,
            sensitive_justification="Crews choose protective equipment by the diagnosis "
            "category of recent cases in the ZIP they are sent to; no names, addresses or "
            "contact details are shared",
            **window,
        ),
    ]


YEAR = dt.timedelta(days=365)
RECENT_CASES = dt.timedelta(days=180)
EMS_CASE_FEED = "Recent case locations, masked, for EMS crew protection"


def _ensure_agreements(hub: Hub, say: Progress) -> None:
    with hub.db.session() as db:
        existing = {a.title for a in policy.list_agreements(db=db, actor=CLI_ADMIN)}
        for request in demo_agreements(utcnow()):
            if request.title in existing:
                continue
            made = policy.request_agreement(db=db, actor=CLI_ADMIN, data=request)
            policy.approve_agreement(db=db, actor=CLI_ADMIN, agreement_id=made.public_id)
            say(f"Agreement {request.datasets[0].dataset} -> {request.recipient}: {request.title}")


def _load_real_datasets(hub: Hub, *, root: Path, say: Progress) -> None:
    if not root.is_dir():
        say(f"No real open data at {root}: skipping it (set CIVICSHARE_REALDATA to load it)")
        return
    for real in REAL_DATASETS:
        with hub.db.session() as db:
            done = _version_count(db, real.ref)
        if done >= len(real.files):
            say(f"Reusing {real.ref}")
            continue
        missing = [name for name in real.files if not (root / name).is_file()]
        if missing:
            say(f"Skipping {real.ref}: {', '.join(missing)} not found under {root}")
            continue
        if done == 0:
            table_schema = reviewed_schema(real, root)
            with hub.db.session() as db:
                _ensure_dataset(db, dataset_create(real, table_schema, agency_contact(real.agency)))
        for name in real.files[done:]:
            with hub.db.session() as db:
                dataset = catalog.get_dataset(db=db, ref=real.ref)
                report = ingest.ingest_file(
                    db=db,
                    hub=hub,
                    actor=CLI_ADMIN,
                    dataset=dataset,
                    source=root / name,
                    filename=Path(name).name,
                    mode="append",
                )
            if report.version is None:
                say(f"{real.ref}: {name} was rejected ({report.rows_rejected:,} bad rows)")
                break
            say(
                f"Ingested {real.ref} version {report.version}: {report.rows_accepted:,} rows"
                + (f" ({report.rows_rejected:,} quarantined)" if report.rows_rejected else "")
            )


def _version_count(db: Session, ref: str) -> int:
    try:
        dataset = catalog.get_dataset(db=db, ref=ref)
    except NotFound:
        return 0
    return len(storage.list_versions(db=db, dataset=dataset))


def _ensure_dataset(db: Session, data: DatasetCreate) -> Dataset:
    """The dataset, created unless an interrupted earlier setup already registered it."""
    try:
        return catalog.get_dataset(db=db, ref=f"{data.agency}.{data.slug}")
    except NotFound:
        return catalog.create_dataset(db=db, actor=CLI_ADMIN, data=data)


def agency_contact(slug: str) -> str:
    return f"data@{slug.replace('_', '-')}.{DEMO_DOMAIN}"


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
                    contact_email=agency_contact(agency.slug),
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
    _write_private_json(path, {"users": [asdict(login) for login in logins]})


def read_credentials(path: Path) -> list[DemoLogin]:
    data = json.loads(path.read_text())
    return [DemoLogin(**entry) for entry in data["users"]]


# ---------------------------------------------------------------------------- Delta Sharing


def share_profile_path(hub: Hub) -> Path:
    return hub.settings.home / SHARE_PROFILE_FILE


@dataclass(frozen=True)
class DemoShare:
    """The demo's Delta Sharing profile file and the name of the share it opens."""

    path: Path
    share: str

    def table_url(self, ref: str) -> str:
        return f"{self.path}#{self.share}.{ref}"


def ensure_share_profile(hub: Hub, *, endpoint: str) -> DemoShare | None:
    """EMS's Delta Sharing profile for the masked case feed (its share and ``open_data``).

    Written once, mode 0600, next to the demo credentials; a later run keeps it while it still
    works at ``endpoint`` and issues a new one otherwise (other port, expired or revoked
    profile). None once someone has revoked the agreement itself: the demo respects that.
    """
    path = share_profile_path(hub)
    with hub.db.session() as db:
        agreement = next(
            a for a in policy.list_agreements(db=db, actor=CLI_ADMIN) if a.title == EMS_CASE_FEED
        )
        if agreement.state() is not State.active:
            return None
        share = DemoShare(path, share_name(agreement.public_id))
        if _profile_still_serves(db, path, endpoint):
            return share
        profile, secret = profiles.issue_agreement_profile(
            db=db,
            actor=CLI_ADMIN,
            agreement_id=agreement.public_id,
            data=ShareProfileCreate(name="demo: EMS case feed", history=True),
        )
        content = profiles.profile_file(profile, secret, endpoint=endpoint)
    _write_private_json(path, content)
    return share


def _profile_still_serves(db: Session, path: Path, endpoint: str) -> bool:
    """Whether the profile file at ``path`` is for ``endpoint`` and its token is still good."""
    try:
        content = json.loads(path.read_text())
        secret = str(content["bearerToken"])
        same_endpoint = content["endpoint"] == endpoint
    except (OSError, ValueError, KeyError):
        return False
    profile = db.scalar(
        select(ShareProfile).where(ShareProfile.token_hash == crypto.hash_token(secret))
    )
    if not same_endpoint or profile is None or profile.revoked_at is not None:
        return False
    soon = utcnow() + dt.timedelta(days=1)
    agreement = profile.agreement
    live = agreement is None or agreement.state() is State.active
    return live and (profile.expires_at is None or profile.expires_at > soon)


def _write_private_json(path: Path, content: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(content, handle, indent=2)
        handle.write("\n")
    tmp.replace(path)
    path.chmod(0o600)
