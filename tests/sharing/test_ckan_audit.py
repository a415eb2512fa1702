"""CKAN datastore calls leave one audit record per governed query they run (in-process hub)."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select

from civicshare.audit import service as audit
from civicshare.audit.models import AuditEntry
from civicshare.hub import Hub
from civicshare.sharing import ckan
from tests.sharing.kit import SENSOR_SCHEMA, sensors_table, write
from tests.support.datasets import make_dataset


def _records_since(hub: Hub, start: int) -> list[dict[str, Any]]:
    with hub.db.read_session() as db:
        query = select(AuditEntry.record).where(AuditEntry.index >= start)
        return [json.loads(record) for record in db.scalars(query.order_by(AuditEntry.index))]


def _appended(hub: Hub) -> int:
    with hub.db.read_session() as db:
        return audit.appended_size(db)


def test_datastore_search_records_the_query_that_served_its_rows(hub: Hub) -> None:
    with hub.db.session() as db:
        sensors = make_dataset(db, "transport.sensors", SENSOR_SCHEMA, visibility="public")
        write(db, hub, sensors, sensors_table(), "replace")
        resource = ckan.resource_id(sensors)
    start = _appended(hub)
    params = {"resource_id": resource, "filters": {"station": "S1"}, "limit": 5}
    body = ckan.datastore_search(hub=hub, params=params, base_url="http://hub/api/3")
    assert len(body["records"]) == 5
    assert body["total"] == 7
    records = _records_since(hub, start)
    # The column probe, the page of rows and the total: each query one record. Before, each
    # query's record was rolled back by the next, leaving only the count's (rows 1).
    assert [(r["action"], r["rows"]) for r in records] == [
        ("query.run", 0),
        ("query.run", 5),
        ("query.run", 1),
    ]
    assert {r["resource"] for r in records} == {sensors.ref}
    start = _appended(hub)
    body = ckan.datastore_search(
        hub=hub, params={**params, "include_total": False}, base_url="http://hub/api/3"
    )
    assert [r["rows"] for r in _records_since(hub, start)] == [0, 5]
