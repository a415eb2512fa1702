"""Building agencies, stewards and datasets for catalog and storage tests (through the services)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from civicshare.agency import service as agency_service
from civicshare.agency.models import Agency, AgencyCreate, Role, UserCreate
from civicshare.catalog import service as catalog
from civicshare.catalog.models import Dataset, DatasetCreate
from civicshare.catalog.tableschema import TableSchema
from civicshare.errors import NotFound
from civicshare.permissions import CLI_ADMIN, Actor

PEOPLE_SCHEMA: dict[str, Any] = {
    "fields": [
        {"name": "person_id", "type": "integer", "constraints": {"required": True}},
        {"name": "full_name", "type": "string", "classification": "personal", "pii": "name"},
        {"name": "diagnosis", "type": "string", "classification": "sensitive"},
        {"name": "zip", "type": "string", "classification": "internal"},
        {"name": "visited", "type": "date"},
        {"name": "score", "type": "number"},
    ],
    "primaryKey": ["person_id"],
}

OPEN_SCHEMA: dict[str, Any] = {
    "fields": [
        {"name": "station", "type": "string", "classification": "public"},
        {"name": "reading", "type": "number", "classification": "public"},
    ]
}


def ensure_agency(db: Session, slug: str) -> Agency:
    try:
        return agency_service.get_agency(db=db, slug=slug)
    except NotFound:
        return agency_service.create_agency(
            db=db, actor=CLI_ADMIN, data=AgencyCreate(slug=slug, title=slug.title())
        )


def person(db: Session, agency: str, role: Role = Role.steward) -> Actor:
    """An actor of ``role`` in ``agency`` (created once per database)."""
    ensure_agency(db, agency)
    email = f"{role.value}.{agency}@example.org"
    try:
        user = agency_service.get_user(db=db, email=email)
    except NotFound:
        user = agency_service.create_user(
            db=db,
            actor=CLI_ADMIN,
            data=UserCreate(email=email, display_name=email, role=role, agency=agency),
        )
    return agency_service.actor_for(user)


def make_dataset(
    db: Session,
    ref: str,
    schema: dict[str, Any] | None = None,
    *,
    visibility: str = "private",
    **metadata: Any,
) -> Dataset:
    agency, slug = ref.split(".")
    ensure_agency(db, agency)
    data = DatasetCreate(
        agency=agency,
        slug=slug,
        title=metadata.pop("title", slug.replace("_", " ").title()),
        visibility=visibility,  # type: ignore[arg-type]
        table_schema=TableSchema.model_validate(schema or PEOPLE_SCHEMA),
        **metadata,
    )
    return catalog.create_dataset(db=db, actor=CLI_ADMIN, data=data)
