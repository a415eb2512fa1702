"""The catalog and storage HTTP API against a real hub process (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import rdflib
import sqlalchemy as sa
from rdflib.namespace import DCAT, DCTERMS, FOAF, RDF

from civicshare.catalog.models import Dataset
from civicshare.db import Database
from tests.agency.test_views import assert_error
from tests.conftest import REALDATA
from tests.support.concurrency import write_held
from tests.support.datasets import OPEN_SCHEMA, PEOPLE_SCHEMA
from tests.support.hubproc import HubProcess


def create(client: httpx.Client, agency: str, slug: str, **fields: Any) -> httpx.Response:
    body = {"agency": agency, "slug": slug, "title": slug.title(), "table_schema": PEOPLE_SCHEMA}
    return client.post("/api/v1/datasets", json={**body, **fields})


def test_create_get_and_list_respect_visibility(hub_process: HubProcess) -> None:
    with hub_process.as_role("steward", "health") as health:
        created = create(health, "health", "v_cases", keywords=["measles"])
        assert created.status_code == 201, created.text
        assert created.json()["ref"] == "health.v_cases"
        assert created.json()["table_schema"]["primaryKey"] == ["person_id"]
        assert (
            create(
                health, "health", "v_beds", table_schema=OPEN_SCHEMA, visibility="hub"
            ).status_code
            == 201
        )
        own = health.get("/api/v1/datasets/health/v_cases")
        assert own.status_code == 200
        assert own.json()["classification"] == "sensitive"
    with hub_process.as_role("analyst", "police") as police:
        assert_error(police.get("/api/v1/datasets/health/v_cases"), 404, "dataset_not_found")
        assert police.get("/api/v1/datasets/health/v_beds").status_code == 200
        refs = [
            d["ref"]
            for d in police.get("/api/v1/datasets", params={"q": "v_cases measles"}).json()["items"]
        ]
        assert refs == []
    with hub_process.client() as public:
        assert_error(public.get("/api/v1/datasets/health/v_beds"), 404, "dataset_not_found")
        listing = public.get("/api/v1/datasets").json()
        assert all(item["visibility"] == "public" for item in listing["items"])
        assert set(listing["facets"]) == {"agency", "theme", "visibility", "classification"}


def test_bad_input_gets_clear_errors_and_changes_nothing(hub_process: HubProcess) -> None:
    with hub_process.as_role("steward", "health") as health:
        before = health.get("/api/v1/datasets").json()["total"]
        assert_error(create(health, "health", "Bad Slug"), 422, "validation_error")
        assert_error(create(health, "nowhere", "x1"), 404, "agency_not_found")
        assert_error(create(health, "police", "x2"), 403, "permission_denied")
        malformed = create(
            health, "health", "x3", table_schema={"fields": [{"name": "a", "type": "text"}]}
        )
        assert_error(malformed, 422, "validation_error")
        public_personal = create(health, "health", "x4", visibility="public")
        assert_error(public_personal, 422, "public_dataset_has_protected_fields")
        assert health.get("/api/v1/datasets").json()["total"] == before


def test_schema_update_needs_the_breaking_flag(hub_process: HubProcess) -> None:
    with hub_process.as_role("steward", "health") as health:
        assert create(health, "health", "v_schema").status_code == 201
        narrower = {**PEOPLE_SCHEMA, "fields": PEOPLE_SCHEMA["fields"][:-1]}
        url = "/api/v1/datasets/health/v_schema/schema"
        refused = health.put(url, json={"table_schema": narrower})
        error = assert_error(refused, 409, "breaking_schema_change")
        assert error["details"] == {"changes": ["field 'score' removed"]}
        accepted = health.put(url, json={"table_schema": narrower, "breaking": True})
        assert accepted.status_code == 200
        assert accepted.json()["number"] == 2
        assert [v["number"] for v in health.get(url).json()] == [1, 2]
        assert health.get("/api/v1/datasets/health/v_schema/versions").json() == []


# rdflib's own JSON-LD parser still uses its deprecated ConjunctiveGraph internally.
@pytest.mark.filterwarnings("ignore:ConjunctiveGraph is deprecated:DeprecationWarning")
def test_dcat_ap_catalogue_lists_public_datasets_with_mandatory_properties(
    hub_process: HubProcess,
) -> None:
    package = json.loads((REALDATA / "population-datapackage" / "datapackage.json").read_text())
    with hub_process.as_role("steward", "transport") as transport:
        created = transport.post(
            "/api/v1/datasets",
            json={
                "agency": "transport",
                "slug": "v_population",
                "title": package["title"],
                "description": package["description"],
                "keywords": package["keywords"],
                "theme": "demographics",
                "license": package["licenses"][0]["path"],
                "spatial": "World",
                "temporal_start": "1960-01-01",
                "frequency": "annual",
                "visibility": "public",
                "table_schema": package["resources"][0]["schema"],
            },
        )
        assert created.status_code == 201, created.text
        assert (
            create(
                transport, "transport", "v_hidden", table_schema=OPEN_SCHEMA, visibility="hub"
            ).status_code
            == 201
        )
    with hub_process.client() as public:
        response = public.get("/api/v1/catalog.jsonld")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/ld+json")
    graph = rdflib.Graph().parse(data=response.text, format="json-ld")
    catalogs = list(graph.subjects(RDF.type, DCAT.Catalog))
    assert len(catalogs) == 1
    catalog = catalogs[0]
    for prop in (DCTERMS.title, DCTERMS.description, DCTERMS.publisher):
        assert graph.value(catalog, prop) is not None, prop
    assert graph.value(graph.value(catalog, DCTERMS.publisher), FOAF.name) is not None
    datasets = {
        str(graph.value(d, DCTERMS.identifier)): d for d in graph.objects(catalog, DCAT.dataset)
    }
    assert "transport.v_population" in datasets
    assert "transport.v_hidden" not in datasets
    for node in datasets.values():
        assert graph.value(node, RDF.type) == DCAT.Dataset
        assert graph.value(node, DCTERMS.title) is not None
        assert graph.value(node, DCTERMS.description) is not None
        distribution = graph.value(node, DCAT.distribution)
        assert distribution is not None
        assert graph.value(distribution, DCAT.accessURL) is not None
    population = datasets["transport.v_population"]
    assert str(graph.value(population, DCTERMS.title)) == package["title"]
    assert {str(k) for k in graph.objects(population, DCAT.keyword)} >= set(package["keywords"])
    for recommended in (DCAT.contactPoint, DCTERMS.publisher, DCTERMS.spatial, DCTERMS.temporal,
                        DCAT.theme, DCTERMS.accrualPeriodicity):  # fmt: skip
        assert graph.value(population, recommended) is not None, recommended
    assert str(graph.value(population, DCAT.theme)).endswith("/data-theme/SOCI")
    licence = graph.value(graph.value(population, DCAT.distribution), DCTERMS.license)
    assert str(licence) == package["licenses"][0]["path"]


def test_catalog_reads_do_not_wait_for_a_writer(hub_process: HubProcess) -> None:
    """Search, a dataset's page data and the DCAT export read a snapshot: an action holding
    the write turn (SQLite) or rows (PostgreSQL) meanwhile does not hold them up."""
    database = Database(hub_process.database_url)
    untouched = sa.update(Dataset).where(Dataset.id == -1).values(title="x")
    with hub_process.as_role("steward", "health") as client:
        made = create(client, "health", "snapshot_beds", table_schema=OPEN_SCHEMA, visibility="hub")
        assert made.status_code == 201, made.text
        # A token's first use is recorded (a write); later uses within a minute only read.
        try:
            with write_held(database, lambda db: db.execute(untouched)):
                # A bounded wait, so a regression fails instead of hanging.
                found = client.get("/api/v1/datasets", timeout=15)
                assert found.status_code == 200, found.text
                assert client.get("/api/v1/catalog.jsonld", timeout=15).status_code == 200
                assert "health.snapshot_beds" in {i["ref"] for i in found.json()["items"]}
                ref = "/api/v1/datasets/health/snapshot_beds"
                assert client.get(ref, timeout=15).status_code == 200
                assert client.get(ref + "/schema", timeout=15).status_code == 200
        finally:
            database.dispose()


@pytest.mark.filterwarnings("ignore:ConjunctiveGraph is deprecated:DeprecationWarning")
def test_dcat_ap_names_only_valid_iris(hub_process: HubProcess) -> None:
    # A licence is free text ("name or URL"): one that merely starts like a URL is not an IRI.
    licence = "https://example.org/licences/open government licence v3"
    with hub_process.as_role("steward", "transport") as transport:
        created = create(
            transport, "transport", "v_licence", table_schema=OPEN_SCHEMA, visibility="public",
            license=licence,
        )  # fmt: skip
        assert created.status_code == 201, created.text
    with hub_process.client() as public:
        response = public.get("/api/v1/catalog.jsonld")
    assert response.status_code == 200
    graph = rdflib.Graph().parse(data=response.text, format="json-ld")
    iris = {term for triple in graph for term in triple if isinstance(term, rdflib.URIRef)}
    assert [iri for iri in iris if any(ch.isspace() or ch in '<>"{}|\\^`' for ch in iri)] == []
    node = next(
        d for d in graph.subjects(DCTERMS.identifier, rdflib.Literal("transport.v_licence"))
    )
    document = graph.value(graph.value(node, DCAT.distribution), DCTERMS.license)
    assert graph.value(document, RDF.type) == DCTERMS.LicenseDocument
    assert str(graph.value(document, rdflib.RDFS.label)) == licence


def test_the_public_sees_versions_of_open_data_without_staff_addresses(
    hub_process: HubProcess,
) -> None:
    with hub_process.as_role("steward", "transport") as transport:
        made = create(
            transport, "transport", "v_authors", table_schema=OPEN_SCHEMA, visibility="public"
        )
        assert made.status_code == 201, made.text
        ingested = transport.post(
            "/api/v1/datasets/transport/v_authors/ingest",
            files={"file": ("readings.csv", b"station,reading\nnorth,12.5\n", "text/csv")},
        )
        assert ingested.status_code == 201, ingested.text
        mine = [
            transport.get(f"/api/v1/datasets/transport/v_authors/{path}").json()
            for path in ("schema", "versions")
        ]
    steward = hub_process.login("steward", "transport").email
    assert [[item["created_by"] for item in listing] for listing in mine] == [[steward]] * 2
    with hub_process.client() as public:
        seen = [
            public.get(f"/api/v1/datasets/transport/v_authors/{path}").json()
            for path in ("schema", "versions")
        ]
    assert [len(listing) for listing in seen] == [1, 1]
    assert [item["created_by"] for listing in seen for item in listing] == [None, None]
