"""The CKAN-compatible open-data API, with the ckanapi client, against a real hub process."""

from __future__ import annotations

import csv
import io

import ckanapi
import httpx
import pytest

from civicshare.query import service as query
from civicshare.sharing.ckan import PUBLIC
from tests.sharing.kit import City, build_city, hub_of
from tests.support.hubproc import HubProcess

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def city(hub_process: HubProcess) -> City:
    return build_city(hub_process, "ck")


@pytest.fixture
def ckan(hub_process: HubProcess) -> ckanapi.RemoteCKAN:
    return ckanapi.RemoteCKAN(hub_process.base_url)


def name_of(city: City) -> str:
    return f"transport--{city.sensors.slug}"


def test_envelope_is_ckans(hub_process: HubProcess, city: City) -> None:
    with hub_process.client() as client:
        ok = client.get("/api/3/action/package_list")
        assert ok.status_code == 200
        body = ok.json()
        assert set(body) == {"help", "success", "result"}
        assert body["success"] is True
        missing = client.get("/api/3/action/package_show", params={"id": "nope"})
        assert missing.status_code == 404
        error = missing.json()
        assert error["success"] is False
        assert error["error"]["__type"] == "Not Found Error"
        unknown = client.post("/api/3/action/package_create", json={"name": "x"})
        assert unknown.status_code == 404
        assert unknown.json()["success"] is False


def test_package_list_and_show_cover_public_datasets_only(
    ckan: ckanapi.RemoteCKAN, city: City
) -> None:
    names = ckan.action.package_list()
    assert name_of(city) in names
    assert all(not name.startswith("health--") for name in names)
    package = ckan.action.package_show(id=name_of(city))
    assert package["title"] == city.sensors.title
    assert package["organization"]["name"] == "transport"
    assert {tag["name"] for tag in package["tags"]} == {"traffic", "air"}
    assert package["license_id"] == "CC-BY-4.0"
    (resource,) = package["resources"]
    assert resource["format"] == "CSV"
    assert resource["datastore_active"] is True
    assert ckan.action.package_show(id=package["id"])["name"] == name_of(city)
    assert ckan.action.package_show(id=city.sensors.ref)["id"] == package["id"]
    with pytest.raises(ckanapi.NotFound):
        ckan.action.package_show(id=f"health--{city.cases.slug}")


def test_package_search_with_q_fq_paging_sort_and_facets(
    ckan: ckanapi.RemoteCKAN, city: City
) -> None:
    found = ckan.action.package_search(
        q="sensors",
        fq="organization:transport tags:traffic res_format:CSV",
        facet_field=None,
        **{"facet.field": ["organization", "tags"]},
    )
    assert name_of(city) in [r["name"] for r in found["results"]]
    assert found["search_facets"]["tags"]["items"]
    assert found["facets"]["organization"]["transport"] >= 1
    everything = ckan.action.package_search(rows=1000, sort="name asc")
    names = [r["name"] for r in everything["results"]]
    assert names == sorted(names)
    assert everything["count"] == len(names)
    paged = ckan.action.package_search(rows=1, start=0, sort="name asc")
    assert [r["name"] for r in paged["results"]] == names[:1]
    assert ckan.action.package_search(rows=5000)["count"] == len(names)
    assert ckan.action.package_search(fq="organization:health")["count"] == 0
    with pytest.raises(ckanapi.SearchQueryError):
        ckan.action.package_search(fq="diagnosis:measles")
    with pytest.raises(ckanapi.ValidationError):
        ckan.action.package_search(rows=-1)


def test_organizations_are_open_data_publishers(ckan: ckanapi.RemoteCKAN, city: City) -> None:
    assert "transport" in ckan.action.organization_list()
    assert "health" not in ckan.action.organization_list()
    shown = ckan.action.organization_show(id="transport", include_datasets=True)
    assert shown["package_count"] >= 1
    assert name_of(city) in [p["name"] for p in shown["packages"]]
    detailed = ckan.action.organization_list(all_fields=True)
    assert any(org["name"] == "transport" and org["package_count"] >= 1 for org in detailed)
    with pytest.raises(ckanapi.NotFound):
        ckan.action.organization_show(id="health")


def test_datastore_search_matches_the_governed_query(
    hub_process: HubProcess, ckan: ckanapi.RemoteCKAN, city: City
) -> None:
    resource = ckan.action.package_show(id=name_of(city))["resources"][0]["id"]
    result = ckan.action.datastore_search(
        resource_id=resource, filters={"station": "S1"}, sort="reading desc"
    )
    with hub_of(hub_process) as hub, hub.db.session() as db:
        governed = query.run_query(
            db=db,
            hub=hub,
            actor=PUBLIC,
            sql=f"SELECT reading FROM {city.sensors.ref} WHERE station = 'S1' "
            "ORDER BY reading DESC",
            purpose=None,
        )
    assert governed.table is not None
    assert [r["reading"] for r in result["records"]] == governed.table.column(0).to_pylist()
    assert result["total"] == governed.table.num_rows
    assert [f["id"] for f in result["fields"]] == ["station", "reading", "taken"]
    assert {f["id"]: f["type"] for f in result["fields"]}["reading"] == "numeric"
    page = ckan.action.datastore_search(
        resource_id=resource, fields=["station"], limit=7, offset=3, sort="reading asc"
    )
    assert len(page["records"]) == 7
    assert set(page["records"][0]) == {"station"}
    assert page["total"] == 50
    text = ckan.action.datastore_search(resource_id=resource, q="S3", include_total=False)
    assert {r["station"] for r in text["records"]} == {"S3"}
    assert "total" not in text
    assert ckan.action.datastore_search(resource_id=resource)["limit"] == 100
    assert ckan.action.datastore_search(resource_id=resource, limit=99999)["limit"] == 32000


def test_datastore_refuses_bad_input_and_private_data(ckan: ckanapi.RemoteCKAN, city: City) -> None:
    resource = ckan.action.package_show(id=name_of(city))["resources"][0]["id"]
    with pytest.raises(ckanapi.ValidationError):
        ckan.action.datastore_search(resource_id=resource, fields=["diagnosis"])
    with pytest.raises(ckanapi.ValidationError):
        ckan.action.datastore_search(resource_id=resource, sort="reading sideways")
    with pytest.raises(ckanapi.ValidationError):
        ckan.action.datastore_search(resource_id=resource, limit=-5)
    with pytest.raises(ckanapi.ValidationError):
        ckan.action.datastore_search()
    with pytest.raises(ckanapi.NotFound):
        ckan.action.datastore_search(resource_id=city.cases.ref)


def test_datastore_search_sql_runs_governed_on_public_data_only(
    ckan: ckanapi.RemoteCKAN, city: City
) -> None:
    resource = ckan.action.package_show(id=name_of(city))["resources"][0]["id"]
    result = ckan.action.datastore_search_sql(
        sql=f'SELECT station, count(*) AS n FROM "{resource}" GROUP BY station ORDER BY station'
    )
    assert [r["station"] for r in result["records"]] == [f"S{i}" for i in range(7)]
    assert sum(r["n"] for r in result["records"]) == 50
    by_ref = ckan.action.datastore_search_sql(sql=f"SELECT count(*) AS n FROM {city.sensors.ref}")
    assert by_ref["records"] == [{"n": 50}]
    with pytest.raises(ckanapi.NotAuthorized):
        ckan.action.datastore_search_sql(sql=f"SELECT * FROM {city.cases.ref}")
    with pytest.raises(ckanapi.CKANAPIError):
        ckan.action.datastore_search_sql(sql=f"DELETE FROM {city.sensors.ref}")


def test_resource_url_downloads_the_rows_as_csv(hub_process: HubProcess, city: City) -> None:
    with hub_process.client() as client:
        package = client.get("/api/3/action/package_show", params={"id": name_of(city)}).json()[
            "result"
        ]
        response = httpx.get(package["resources"][0]["url"], timeout=30)
    assert response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == 50
    assert set(rows[0]) == {"station", "reading", "taken"}
