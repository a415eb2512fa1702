"""Which tables an actor may query: own, public and active-agreement datasets, as policy_view."""

from __future__ import annotations

import pyarrow as pa
import pytest

from civicshare.agency.models import Role
from civicshare.catalog import service as catalog
from civicshare.hub import Hub
from civicshare.permissions import CLI_ADMIN, Actor
from civicshare.policy import service as policy
from civicshare.policy.models import QueryableTable
from civicshare.storage import service as storage
from tests.policy.kit import agreement, cases_table, publish
from tests.support.datasets import make_dataset, person

COUNTS_SCHEMA = {
    "fields": [
        {"name": "day", "type": "date"},
        {"name": "counter", "type": "string"},
        {"name": "bikes", "type": "integer"},
    ]
}


def _publish_counts(hub: Hub, ref: str) -> None:
    with hub.db.session() as db:
        dataset = make_dataset(db, ref, COUNTS_SCHEMA, visibility="public")
        schema = catalog.current_schema(db=db, dataset=dataset).arrow_schema()
        table = pa.table({"day": [None], "counter": ["fremont"], "bikes": [3]}).cast(schema)
        storage.write_version(
            db=db,
            hub=hub,
            actor=CLI_ADMIN,
            dataset=dataset,
            batches=table.to_batches(),
            schema=schema,
            keep_previous=False,
            operation="replace",
        )


@pytest.fixture
def city(hub: Hub) -> Hub:
    _publish_counts(hub, "transport.counts")
    with hub.db.session() as db:
        publish(db, hub, "health.cases", cases_table(30))
        publish(db, hub, "fire_ems.calls", cases_table(10))
        make_dataset(db, "fire_ems.empty", visibility="hub")  # no data: nothing to query
        agreement(
            db,
            recipient="fire_ems",
            dataset="health.cases",
            columns={"zip": "clear", "report_date": "year_only", "resident_id": "pseudonym"},
            aggregate_only=True,
            min_cell=5,
            row_filter="zip <> '94102'",
        )
        agreement(
            db,
            recipient="fire_ems",
            dataset="health.cases",
            columns={"zip": "clear"},
            purpose="research",
            approve=False,  # requested only
        )
        agreement(db, recipient="police", dataset="health.cases", columns={"age": "clear"})
    return hub


def _tables(hub: Hub, actor: Actor) -> list[QueryableTable]:
    with hub.db.session() as db:
        return policy.queryable_tables(db=db, actor=actor)


def _actor(hub: Hub, agency: str, role: Role) -> Actor:
    with hub.db.session() as db:
        return person(db, agency, role)


def test_analyst_sees_own_public_and_active_agreements(city: Hub) -> None:
    tables = _tables(city, _actor(city, "fire_ems", Role.analyst))
    assert [(t.ref, t.access, t.purpose) for t in tables] == [
        ("fire_ems.calls", "own", None),
        ("transport.counts", "public", None),
        ("health.cases", "agreement", "public_health_surveillance"),
    ]
    shared = tables[2]
    assert [(c.name, c.type, c.treatment) for c in shared.columns] == [
        ("zip", "string", "clear"),
        ("report_date", "date", "year_only"),
        ("resident_id", "string", "pseudonym"),
    ]
    assert shared.aggregate_only
    assert shared.min_cell == 5
    assert shared.row_filter == "zip <> '94102'"
    assert shared.agreement is not None
    assert shared.agreement_title == "health.cases for fire_ems"
    assert "full_name" in [c.name for c in tables[0].columns]  # own data: every column


def test_every_listed_table_is_what_policy_view_grants(city: Hub) -> None:
    for agency in ("fire_ems", "police", "health"):
        actor = _actor(city, agency, Role.analyst)
        with city.db.session() as db:
            for table in policy.queryable_tables(db=db, actor=actor):
                dataset = catalog.get_dataset(db=db, ref=table.ref)
                view = policy.policy_view(
                    db=db, hub=city, actor=actor, dataset=dataset, purpose=table.purpose
                )
                assert view.access == table.access
                assert view.agreement_id == table.agreement
                assert [(c.name, c.treatment.spec) for c in view.columns] == [
                    (c.name, c.treatment) for c in table.columns
                ]


def test_revoked_agreement_disappears(city: Hub) -> None:
    analyst = _actor(city, "police", Role.analyst)
    [granted] = [t for t in _tables(city, analyst) if t.access == "agreement"]
    assert granted.ref == "health.cases"
    assert not granted.aggregate_only
    assert granted.agreement is not None
    with city.db.session() as db:
        steward = person(db, "health", Role.steward)
        policy.revoke_agreement(
            db=db, actor=steward, agreement_id=granted.agreement, reason="programme ended"
        )
    assert [t.access for t in _tables(city, analyst)] == ["public"]


def test_people_outside_agencies_see_only_open_data(city: Hub) -> None:
    auditor = _actor(city, "health", Role.auditor)
    assert [(t.ref, t.access) for t in _tables(city, auditor)] == [("transport.counts", "public")]
    assert [t.ref for t in _tables(city, CLI_ADMIN)] == ["transport.counts"]
