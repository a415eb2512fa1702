"""Catalog and open-data pages over real HTTP: visibility, search, schema, preview, downloads."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

import pyarrow.parquet as pq
import pytest

from tests.support.hubproc import HubProcess
from tests.web.portal_client import PortalClient, staff_client
from tests.web.seed import BIKES_CSV, seed_catalog


@pytest.fixture(scope="module")
def hub(hub_process: HubProcess) -> HubProcess:
    seed_catalog(hub_process)
    return hub_process


@pytest.fixture
def public(hub: HubProcess) -> Iterator[PortalClient]:
    with PortalClient(hub) as client:
        yield client


def test_open_data_lists_only_public_datasets(public: PortalClient) -> None:
    page = public.get("/open-data")
    assert page.status_code == 200
    assert "Bicycle counter readings" in page.text
    assert "Influenza case reports" not in page.text
    assert 'href="/api/v1/catalog.jsonld"' in page.text


def test_open_data_search_and_facets(public: PortalClient) -> None:
    hit = public.get("/open-data", params={"q": "bicycle"})
    assert "Bicycle counter readings" in hit.text
    assert "transport (1)" in hit.text
    miss = public.get("/open-data", params={"q": "influenza"})
    assert "No dataset matches" in miss.text
    # Asking the public portal for hub datasets changes nothing: it stays public only.
    forced = public.get("/open-data", params={"visibility": "hub"})
    assert "Influenza case reports" not in forced.text


def test_public_dataset_page_shows_schema_versions_and_licence(public: PortalClient) -> None:
    page = public.get("/open-data/transport.bike_counts")
    assert page.status_code == 200
    text = page.text
    assert "CC-BY-4.0" in text
    assert "<code>counter</code>" in text
    assert "one of fremont, spokane, elliott" in text
    assert "primary key" in text
    assert '<td class="num">27</td>' in text  # version 1 holds 27 rows


def test_hub_datasets_are_not_open_data(public: PortalClient) -> None:
    assert public.get("/open-data/health.flu_cases").status_code == 404
    assert public.get("/open-data/health.flu_cases/download").status_code == 404


def test_staff_catalog_needs_a_login(public: PortalClient) -> None:
    response = public.get("/catalog")
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2Fcatalog"


def test_staff_see_hub_datasets_with_classification_badges(hub: HubProcess) -> None:
    with staff_client(hub, "analyst", "fire_ems") as analyst:
        listing = analyst.get("/catalog", params={"classification": "sensitive"})
        assert "Influenza case reports" in listing.text
        assert "Bicycle counter readings" not in listing.text
        page = analyst.get("/catalog/health.flu_cases")
    assert page.status_code == 200
    assert '<span class="badge sensitive">sensitive</span>' in page.text
    assert '<span class="badge pii">PII: name</span>' in page.text


def test_preview_as_owner_and_refusal_without_agreement(hub: HubProcess) -> None:
    with staff_client(hub, "steward", "health") as owner:
        own = owner.get("/catalog/health.flu_cases", params={"preview": "1"})
    assert "Person 1" in own.text  # the owning agency sees its own rows
    with staff_client(hub, "analyst", "fire_ems") as other:
        refused = other.get(
            "/catalog/health.flu_cases",
            params={"preview": "1", "purpose": "emergency_response"},
        )
    assert refused.status_code == 200
    assert "Person 1" not in refused.text
    assert 'role="alert"' in refused.text


def test_open_data_preview_and_chart(public: PortalClient) -> None:
    page = public.get(
        "/open-data/transport.bike_counts", params={"preview": "1", "chart": "counter"}
    )
    assert page.status_code == 200
    assert "fremont" in page.text
    assert "data-vega-spec=" in page.text
    assert "Most frequent counter" in page.text
    timeline = public.get("/open-data/transport.bike_counts", params={"chart": "day"})
    assert "Rows per month of day" in timeline.text


@pytest.mark.parametrize("fmt", ["csv", "json", "parquet"])
def test_open_data_downloads(public: PortalClient, fmt: str) -> None:
    response = public.get("/open-data/transport.bike_counts/download", params={"format": fmt})
    assert response.status_code == 200
    assert f'filename="bike_counts.{fmt}"' in response.headers["content-disposition"]
    expected_rows = len(BIKES_CSV.strip().splitlines()) - 1
    if fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(response.text)))
        assert len(rows) == expected_rows
        assert set(rows[0]) == {"day", "counter", "bikes"}
    elif fmt == "json":
        assert len(response.json()["rows"]) == expected_rows
    else:
        assert pq.read_table(io.BytesIO(response.content)).num_rows == expected_rows


@pytest.mark.parametrize(
    "path",
    [
        "/open-data?q=" + "x" * 5000,
        "/open-data?page=abc",
        "/open-data?page=-3",
        "/open-data?q=%22%27%3B--+OR+1%3D1",
        "/open-data?agency=%00",
        "/open-data/not-a-ref",
        "/open-data/transport.bike_counts?chart=no_such_column",
        "/open-data/transport.bike_counts?chart=%22%3BDROP",
        "/open-data/transport.bike_counts/download?format=exe",
        "/open-data/transport.bike_counts?purpose=made_up&preview=1",
        "/open-data/a.b.c",
    ],
)
def test_odd_input_never_breaks_a_page(public: PortalClient, path: str) -> None:
    response = public.get(path)
    assert response.status_code < 500, response.text[:500]
    assert "text/html" in response.headers["content-type"]
