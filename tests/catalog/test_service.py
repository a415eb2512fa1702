"""Catalog services on real SQLite and PostgreSQL: registration, schema versions, search."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.orm import Session

from civicshare.agency.models import Role
from civicshare.audit.models import AuditEntry
from civicshare.catalog import service as catalog
from civicshare.catalog.models import Dataset, DatasetCreate, DatasetUpdate
from civicshare.catalog.tableschema import TableSchema
from civicshare.errors import Conflict, Forbidden, Invalid, NotFound
from civicshare.permissions import CLI_ADMIN
from tests.support.datasets import OPEN_SCHEMA, PEOPLE_SCHEMA, ensure_agency, make_dataset, person


def count(db: Session, model: type[Any]) -> int:
    return db.scalar(sa.select(sa.func.count()).select_from(model)) or 0


def test_create_and_get_dataset(db: Session) -> None:
    steward = person(db, "health")
    created = catalog.create_dataset(
        db=db,
        actor=steward,
        data=DatasetCreate(
            agency="health",
            slug="cases",
            title="Disease cases",
            keywords=["covid"],
            theme="health",
            table_schema=TableSchema.model_validate(PEOPLE_SCHEMA),
        ),
    )
    found = catalog.get_dataset(db=db, ref="health.cases")
    assert found.id == created.id
    assert found.ref == "health.cases"
    assert (found.visibility, found.classification, found.schema_version) == (
        "private",
        "sensitive",
        1,
    )
    assert catalog.current_schema(db=db, dataset=found).field_names[0] == "person_id"
    entry = db.scalars(sa.select(AuditEntry).order_by(AuditEntry.index.desc())).first()
    assert entry is not None
    assert entry.action == "dataset.create"
    assert entry.actor_email == steward.email
    assert entry.agency == "health"


@pytest.mark.parametrize(
    ("ref", "code"),
    [
        ("health", "bad_dataset_ref"),
        ("health.cases.extra", "bad_dataset_ref"),
        ("Health.cases", "bad_dataset_ref"),
        ("health.1cases", "bad_dataset_ref"),
        ("nowhere.cases", "agency_not_found"),
        ("health.missing", "dataset_not_found"),
    ],
)
def test_bad_references_get_clear_errors(db: Session, ref: str, code: str) -> None:
    ensure_agency(db, "health")
    with pytest.raises((Invalid, NotFound)) as error:
        catalog.get_dataset(db=db, ref=ref)
    assert error.value.code == code  # type: ignore[union-attr]


@pytest.mark.parametrize("keywords", [[""], ["flu", "   "], ["x" * 101]])
def test_keywords_are_words_not_blanks_or_essays(keywords: list[str]) -> None:
    base = {"agency": "health", "slug": "cases", "title": "Cases", "table_schema": PEOPLE_SCHEMA}
    with pytest.raises(ValidationError, match="keywords"):
        DatasetCreate.model_validate({**base, "keywords": keywords})
    with pytest.raises(ValidationError, match="keywords"):
        DatasetUpdate(keywords=keywords)


@pytest.mark.parametrize(
    "overrides",
    [
        {"title": "Cases\x00"},
        {"description": "a\x00b"},
        {"keywords": ["flu\x00"]},
        {"theme": "\x00"},
        {"spatial": "NYC\x00"},
        {"license": "CC\x00"},
        {"table_schema": {"fields": [{"name": "a", "description": "x\x00"}]}},
        {"table_schema": {"fields": [{"name": "a", "title": "x\x00"}]}},
    ],
)
def test_text_with_nul_characters_is_refused(db: Session, overrides: dict[str, Any]) -> None:
    # PostgreSQL cannot store NUL in text: it would be an internal error, not a clear one.
    ensure_agency(db, "health")
    base = {"agency": "health", "slug": "cases", "title": "Cases", "table_schema": OPEN_SCHEMA}
    with pytest.raises(ValidationError, match="NUL"):
        DatasetCreate.model_validate({**base, **overrides})
    if "table_schema" not in overrides:
        with pytest.raises(ValidationError, match="NUL"):
            DatasetUpdate.model_validate(overrides)


def test_a_search_filter_with_a_nul_character_matches_nothing(db: Session) -> None:
    _city(db)
    for name in ("theme", "agency", "visibility", "classification"):
        assert catalog.search(db=db, actor=CLI_ADMIN, **{name: "health\x00"}).total == 0


@pytest.mark.parametrize("slug", ["with", "join", "values", "union", "as", "and", "any", "map"])
def test_slugs_that_sql_cannot_address_are_reserved(slug: str) -> None:
    # `SELECT * FROM health.with` does not parse: the dataset could never be queried.
    base = {"agency": "health", "slug": "cases", "title": "Cases", "table_schema": OPEN_SCHEMA}
    with pytest.raises(ValidationError, match="reserved"):
        DatasetCreate.model_validate({**base, "slug": slug})
    with pytest.raises(ValidationError, match="reserved"):
        DatasetCreate.model_validate({**base, "agency": slug})


def test_sql_keywords_that_sql_can_address_stay_usable_slugs() -> None:
    base = {"agency": "health", "title": "Orders", "table_schema": OPEN_SCHEMA}
    for slug in ("order", "group", "limit", "natural", "left"):
        assert DatasetCreate.model_validate({**base, "slug": slug}).slug == slug


def test_keywords_are_trimmed() -> None:
    assert DatasetUpdate(keywords=[" flu ", "measles"]).keywords == ["flu", "measles"]


def test_bad_input_changes_nothing(db: Session) -> None:
    ensure_agency(db, "health")
    make_dataset(db, "health.cases")
    before = (count(db, Dataset), count(db, AuditEntry))
    with pytest.raises(ValidationError):
        DatasetCreate(agency="health", slug="Bad Slug", title="x", table_schema=PEOPLE_SCHEMA)  # type: ignore[arg-type]
    failures = [
        ({"agency": "nowhere"}, NotFound, "agency_not_found"),
        ({"slug": "cases"}, Conflict, "dataset_exists"),
        ({"visibility": "public"}, Invalid, "public_dataset_has_protected_fields"),
    ]
    for overrides, error_type, code in failures:
        data = DatasetCreate.model_validate(
            {
                "agency": "health",
                "slug": "other",
                "title": "Other",
                "table_schema": PEOPLE_SCHEMA,
                **overrides,
            }
        )
        with pytest.raises(error_type) as error:
            catalog.create_dataset(db=db, actor=CLI_ADMIN, data=data)
        assert error.value.code == code
    assert (count(db, Dataset), count(db, AuditEntry)) == before


def test_only_stewards_of_the_agency_or_admins_create(db: Session) -> None:
    data = DatasetCreate(
        agency="health",
        slug="cases",
        title="x",
        table_schema=TableSchema.model_validate(OPEN_SCHEMA),
    )
    for actor in (person(db, "police"), person(db, "health", Role.analyst)):
        with pytest.raises(Forbidden):
            catalog.create_dataset(db=db, actor=actor, data=data)
    assert catalog.create_dataset(db=db, actor=person(db, "health"), data=data).slug == "cases"


def test_schema_versions_and_the_breaking_change_rule(db: Session) -> None:
    dataset = make_dataset(db, "health.cases")
    narrower = {**PEOPLE_SCHEMA, "fields": PEOPLE_SCHEMA["fields"][:-1]}
    with pytest.raises(Conflict) as error:
        catalog.update_schema(
            db=db,
            actor=CLI_ADMIN,
            dataset=dataset,
            table_schema=TableSchema.model_validate(narrower),
        )
    assert error.value.code == "breaking_schema_change"
    assert error.value.details == {"changes": ["field 'score' removed"]}
    assert dataset.schema_version == 1
    row = catalog.update_schema(
        db=db,
        actor=CLI_ADMIN,
        dataset=dataset,
        table_schema=TableSchema.model_validate(narrower),
        breaking=True,
    )
    assert (row.number, row.breaking, dataset.schema_version) == (2, True, 2)
    wider = {**narrower, "fields": [*narrower["fields"], {"name": "ward", "type": "integer"}]}
    row = catalog.update_schema(
        db=db, actor=CLI_ADMIN, dataset=dataset, table_schema=TableSchema.model_validate(wider)
    )
    assert (row.number, row.breaking, row.changes) == (3, False, [])
    same = catalog.update_schema(
        db=db, actor=CLI_ADMIN, dataset=dataset, table_schema=TableSchema.model_validate(wider)
    )
    assert same.number == 3
    assert [v.number for v in catalog.schema_versions(db=db, dataset=dataset)] == [1, 2, 3]
    assert catalog.schema_at(db=db, dataset=dataset, number=1).field_names[-1] == "score"
    actions = list(db.scalars(sa.select(AuditEntry.action)))
    assert actions.count("dataset.schema_update") == 2


def test_update_metadata_is_audited_and_checked(db: Session) -> None:
    dataset = make_dataset(db, "transport.air", OPEN_SCHEMA, title="Air")
    catalog.update_dataset(
        db=db,
        actor=CLI_ADMIN,
        dataset=dataset,
        data=DatasetUpdate(title="Air quality", visibility="public", frequency="daily"),  # type: ignore[arg-type]
    )
    assert (dataset.title, dataset.visibility, dataset.frequency) == (
        "Air quality",
        "public",
        "daily",
    )
    private = make_dataset(db, "health.cases")
    with pytest.raises(Invalid) as error:
        catalog.update_dataset(
            db=db,
            actor=CLI_ADMIN,
            dataset=private,
            data=DatasetUpdate(visibility="public"),  # type: ignore[arg-type]
        )
    assert error.value.code == "public_dataset_has_protected_fields"
    assert private.visibility == "private"


def _city(db: Session) -> None:
    make_dataset(
        db, "health.cases", title="Disease cases", keywords=["surveillance"], theme="health"
    )
    make_dataset(
        db, "health.beds", OPEN_SCHEMA, visibility="hub", title="Hospital beds", theme="health"
    )
    make_dataset(
        db,
        "transport.air",
        OPEN_SCHEMA,
        visibility="public",
        title="Air quality sensors",
        theme="environment",
    )
    make_dataset(
        db, "police.contacts", visibility="private", title="Police contacts", theme="safety"
    )


def refs(result: Any) -> list[str]:
    return [item.ref for item in result.items]


def test_search_shows_only_what_the_caller_may_see(db: Session) -> None:
    _city(db)
    public = catalog.search(db=db, actor=None)
    assert refs(public) == ["transport.air"]
    police = catalog.search(db=db, actor=person(db, "police", Role.analyst))
    assert refs(police) == ["health.beds", "police.contacts", "transport.air"]
    health = catalog.search(db=db, actor=person(db, "health"))
    assert refs(health) == ["health.beds", "health.cases", "transport.air"]
    admin = catalog.search(db=db, actor=CLI_ADMIN)
    assert admin.total == 4
    # Even a query naming it exactly does not reveal a private dataset of another agency.
    assert catalog.search(db=db, actor=person(db, "police"), q="disease cases").total == 0
    assert catalog.search(db=db, actor=None, q="police").total == 0
    with pytest.raises(NotFound):
        catalog.get_visible_dataset(db=db, actor=person(db, "police"), ref="health.cases")
    assert [d.ref for d in catalog.list_datasets(db=db, actor=None)] == ["transport.air"]


def test_search_matches_text_and_field_names_with_facets(db: Session) -> None:
    _city(db)
    health = person(db, "health")
    by_title = catalog.search(db=db, actor=health, q="hospital")
    assert refs(by_title) == ["health.beds"]
    by_field = catalog.search(db=db, actor=health, q="diagnosis")
    assert refs(by_field) == ["health.cases"]
    by_prefix = catalog.search(db=db, actor=health, q="surveil")
    assert refs(by_prefix) == ["health.cases"]
    by_stem = catalog.search(db=db, actor=health, q="sensor")
    assert refs(by_stem) == ["transport.air"]
    assert catalog.search(db=db, actor=health, q='" OR * NEAR(').total == 0
    everything = catalog.search(db=db, actor=health)
    assert everything.facets["agency"] == {"health": 2, "transport": 1}
    assert everything.facets["visibility"] == {"hub": 1, "private": 1, "public": 1}
    assert everything.facets["classification"] == {"public": 2, "sensitive": 1}
    assert everything.facets["theme"] == {"environment": 1, "health": 2}
    filtered = catalog.search(db=db, actor=health, theme="health", visibility="hub")
    assert refs(filtered) == ["health.beds"]
    assert refs(catalog.search(db=db, actor=health, classification="sensitive")) == ["health.cases"]
    assert refs(catalog.search(db=db, actor=health, agency="transport")) == ["transport.air"]
    page = catalog.search(db=db, actor=health, limit=1, offset=1)
    assert page.total == 3
    assert refs(page) == ["health.cases"]
    with pytest.raises(Invalid):
        catalog.search(db=db, actor=health, limit=0)


def test_search_matches_any_prefix_of_a_word_on_both_backends(db: Session) -> None:
    # PostgreSQL stems a prefix as if it were a word: `hospita` is not a prefix of `hospit`.
    _city(db)
    health = person(db, "health")
    expected = {
        "hospita": "health.beds",
        "hospitals": "health.beds",
        "surveillanc": "health.cases",
        "diagnosi": "health.cases",
        "qualit": "transport.air",
        "sensor": "transport.air",
    }
    for prefix, ref in expected.items():
        assert refs(catalog.search(db=db, actor=health, q=prefix)) == [ref], prefix
    assert refs(catalog.search(db=db, actor=health, q="Hospita bed")) == ["health.beds"]


def test_search_index_follows_updates(db: Session) -> None:
    dataset = make_dataset(db, "transport.air", OPEN_SCHEMA, visibility="public", title="Air")
    assert catalog.search(db=db, actor=None, q="bicycle").total == 0
    catalog.update_dataset(
        db=db, actor=CLI_ADMIN, dataset=dataset, data=DatasetUpdate(title="Bicycle counters")
    )
    assert refs(catalog.search(db=db, actor=None, q="bicycle")) == ["transport.air"]
