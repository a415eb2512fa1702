"""Datasets for the portal tests, made through the hub's own HTTP API by the demo stewards."""

from __future__ import annotations

from typing import Any

from tests.support.hubproc import HubProcess

BIKES_CSV = "day,counter,bikes\n" + "".join(
    f"2026-{month:02d}-{day:02d},{counter},{(month * 7 + day * 3) % 50}\n"
    for month in (1, 2, 3)
    for day in (1, 10, 20)
    for counter in ("fremont", "spokane", "elliott")
)
CASES_CSV = "case_id,zip,onset,diagnosis,patient_name\n" + "".join(
    f"{i},{94100 + i % 4},2026-0{1 + i % 3}-1{i % 9},flu,Person {i}\n" for i in range(1, 41)
)

BIKES: dict[str, Any] = {
    "agency": "transport",
    "slug": "bike_counts",
    "title": "Bicycle counter readings",
    "description": "Daily bicycle counts at the city's automatic counters.",
    "keywords": ["bicycles", "sensors"],
    "theme": "transport",
    "license": "CC-BY-4.0",
    "visibility": "public",
    "table_schema": {
        "fields": [
            {
                "name": "day",
                "type": "date",
                "classification": "public",
                "constraints": {"required": True},
            },
            {
                "name": "counter",
                "type": "string",
                "classification": "public",
                "constraints": {"enum": ["fremont", "spokane", "elliott"]},
            },
            {
                "name": "bikes",
                "type": "integer",
                "classification": "public",
                "constraints": {"minimum": 0},
            },
        ],
        "primaryKey": ["day", "counter"],
    },
}
CASES: dict[str, Any] = {
    "agency": "health",
    "slug": "flu_cases",
    "title": "Influenza case reports",
    "description": "Person-level influenza case reports (restricted).",
    "keywords": ["influenza", "surveillance"],
    "theme": "health",
    "license": "internal use",
    "visibility": "hub",
    "table_schema": {
        "fields": [
            {
                "name": "case_id",
                "type": "integer",
                "classification": "internal",
                "constraints": {"required": True, "unique": True},
            },
            {"name": "zip", "type": "string", "classification": "internal"},
            {"name": "onset", "type": "date", "classification": "personal"},
            {"name": "diagnosis", "type": "string", "classification": "sensitive"},
            {"name": "patient_name", "type": "string", "classification": "personal", "pii": "name"},
        ],
        "primaryKey": ["case_id"],
    },
}


def create_dataset(proc: HubProcess, spec: dict[str, Any]) -> None:
    """Register the dataset without data (the test then uploads it, e.g. through the portal)."""
    with proc.as_role("steward", spec["agency"]) as steward:
        created = steward.post("/api/v1/datasets", json=spec)
        assert created.status_code == 201, created.text


def create_with_data(proc: HubProcess, spec: dict[str, Any], csv_text: str) -> None:
    create_dataset(proc, spec)
    with proc.as_role("steward", spec["agency"]) as steward:
        path = f"/api/v1/datasets/{spec['agency']}/{spec['slug']}/ingest"
        files = {"file": (f"{spec['slug']}.csv", csv_text.encode(), "text/csv")}
        stored = steward.post(path, files=files)
        assert stored.status_code == 201, stored.text


def seed_catalog(proc: HubProcess) -> None:
    create_with_data(proc, BIKES, BIKES_CSV)
    create_with_data(proc, CASES, CASES_CSV)
