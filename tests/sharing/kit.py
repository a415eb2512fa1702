"""A shared city for the sharing tests: data written into a running hub process's home."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
from sqlalchemy.orm import Session

from civicshare.agency.models import Role
from civicshare.catalog import service as catalog
from civicshare.catalog.models import Dataset
from civicshare.config import Settings
from civicshare.hub import Hub
from civicshare.permissions import CLI_ADMIN, Actor
from civicshare.storage import service as storage
from tests.policy.kit import CASES_SCHEMA, agreement, cases_table
from tests.support.datasets import make_dataset, person
from tests.support.hubproc import HubProcess

SENSOR_SCHEMA: dict[str, Any] = {
    "fields": [
        {"name": "station", "type": "string", "classification": "public"},
        {"name": "reading", "type": "number", "classification": "public"},
        {"name": "taken", "type": "datetime", "classification": "public"},
    ],
}
# What fire_ems may see of health's cases: names redacted, diagnosis and resident ids withheld.
GRANTED = {
    "case_id": "clear",
    "full_name": "redact",
    "zip": "clear",
    "report_date": "clear",
    "age": "clear",
}
PURPOSE = "public_health_surveillance"


@contextmanager
def hub_of(proc: HubProcess) -> Iterator[Hub]:
    """The process's hub, opened from this test process (same home, key and database)."""
    hub = Hub(Settings(home=proc.home, database_url=proc.database_url))
    try:
        yield hub
    finally:
        hub.close()


def write(db: Session, hub: Hub, dataset: Dataset, table: pa.Table, operation: str) -> int:
    stored = table.cast(catalog.current_schema(db=db, dataset=dataset).arrow_schema())
    version = storage.write_version(
        db=db,
        hub=hub,
        actor=CLI_ADMIN,
        dataset=dataset,
        batches=stored.to_batches(max_chunksize=97),
        schema=stored.schema,
        keep_previous=False,
        operation=operation,
    )
    return version.number


def sensors_table(rows: int = 50) -> pa.Table:
    start = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    return pa.table(
        {
            "station": [f"S{i % 7}" for i in range(rows)],
            "reading": [round(i * 0.37, 2) for i in range(rows)],
            "taken": pa.array(
                [start + dt.timedelta(minutes=i) for i in range(rows)], pa.timestamp("us", "UTC")
            ),
        }
    )


@dataclass
class City:
    cases: Dataset
    sensors: Dataset
    agreement_id: str
    versions: list[pa.Table]  # the full contents of health.cases, version by version
    recipient: Actor


def build_city(proc: HubProcess, prefix: str) -> City:
    """health.<prefix>_cases (4 versions: replace, append, upsert, delete) shared with fire_ems
    under an agreement, and transport.<prefix>_sensors as open data."""
    base = cases_table(rows=60)
    appended = pa.concat_tables([base, cases_table(rows=80).slice(60)])
    upserted = _upsert(appended, {3: 99, 61: 7}, new_ids=[500])
    deleted = upserted.filter(
        pa.compute.invert(pa.compute.is_in(upserted["case_id"], pa.array([4, 62])))
    )
    versions = [base, appended, upserted, deleted]
    with hub_of(proc) as hub, hub.db.session() as db:
        cases = make_dataset(db, f"health.{prefix}_cases", CASES_SCHEMA, visibility="hub")
        for table, operation in zip(
            versions, ["replace", "append", "upsert", "delete"], strict=True
        ):
            write(db, hub, cases, table, operation)
        sensors = make_dataset(
            db,
            f"transport.{prefix}_sensors",
            SENSOR_SCHEMA,
            visibility="public",
            keywords=["traffic", "air"],
            license="CC-BY-4.0",
        )
        write(db, hub, sensors, sensors_table(), "replace")
        made = agreement(
            db, recipient="fire_ems", dataset=cases.ref, columns=GRANTED, allow_history=True
        )
        recipient = person(db, "fire_ems", Role.analyst)
        return City(cases, sensors, made.public_id, versions, recipient)


def _upsert(table: pa.Table, ages: dict[int, int], new_ids: list[int]) -> pa.Table:
    rows = table.to_pylist()
    for row in rows:
        if row["case_id"] in ages:
            row["age"] = ages[row["case_id"]]
    template = dict(rows[0])
    for case_id in new_ids:
        rows.append({**template, "case_id": case_id, "full_name": f"Resident {case_id}"})
    return pa.Table.from_pylist(rows, schema=table.schema)


def save_profile(folder: Path, created: dict[str, Any], name: str = "profile.share") -> Path:
    path = folder / name
    path.write_text(json.dumps(created["profile_file"]))
    return path


def steward_profile(proc: HubProcess, agreement_id: str, **body: Any) -> dict[str, Any]:
    with proc.as_role("steward", "health") as client:
        response = client.post(f"/api/v1/agreements/{agreement_id}/share-profiles", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created
