"""A small city for policy and query tests: datasets with data, people, agreements."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import pyarrow as pa
from sqlalchemy.orm import Session

from civicshare.agency.models import Role
from civicshare.catalog.models import Dataset
from civicshare.hub import Hub
from civicshare.permissions import CLI_ADMIN, Actor
from civicshare.policy import service as policy
from civicshare.policy.models import Agreement, AgreementRequest
from civicshare.storage import service as storage
from tests.support.datasets import make_dataset, person

CASES_SCHEMA: dict[str, Any] = {
    "fields": [
        {"name": "case_id", "type": "integer", "constraints": {"required": True}},
        {"name": "resident_id", "type": "string", "classification": "personal",
         "pii": "national_id"},
        {"name": "full_name", "type": "string", "classification": "personal", "pii": "name"},
        {"name": "diagnosis", "type": "string", "classification": "sensitive"},
        {"name": "zip", "type": "string"},
        {"name": "report_date", "type": "date"},
        {"name": "age", "type": "integer"},
    ],
    "primaryKey": ["case_id"],
}  # fmt: skip
ZIPS = ["94102", "94103", "94110", "94112"]
DIAGNOSES = ["influenza", "measles", "covid-19"]


def cases_table(rows: int = 400, seed: int = 11) -> pa.Table:
    rng = random.Random(seed)
    start = dt.date(2026, 1, 1)
    return pa.table(
        {
            "case_id": pa.array(range(1, rows + 1), pa.int64()),
            "resident_id": [f"R-{i:05d}" for i in range(1, rows + 1)],
            "full_name": [f"Resident {i}" for i in range(1, rows + 1)],
            "diagnosis": [rng.choice(DIAGNOSES) for _ in range(rows)],
            "zip": [rng.choice(ZIPS) for _ in range(rows)],
            "report_date": pa.array(
                [start + dt.timedelta(days=rng.randint(0, 90)) for _ in range(rows)], pa.date32()
            ),
            "age": pa.array([rng.randint(0, 95) for _ in range(rows)], pa.int64()),
        }
    )


def publish(
    db: Session, hub: Hub, ref: str, table: pa.Table, visibility: str = "hub", **metadata: Any
) -> Dataset:
    dataset = make_dataset(db, ref, CASES_SCHEMA, visibility=visibility, **metadata)
    stored = table.cast(storage_schema(db, dataset))
    storage.write_version(
        db=db,
        hub=hub,
        actor=CLI_ADMIN,
        dataset=dataset,
        batches=stored.to_batches(),
        schema=stored.schema,
        keep_previous=False,
        operation="replace",
    )
    return dataset


def storage_schema(db: Session, dataset: Dataset) -> pa.Schema:
    from civicshare.catalog import service as catalog

    return catalog.current_schema(db=db, dataset=dataset).arrow_schema()


def window(days_from: int = -1, days_until: int = 30) -> dict[str, dt.datetime]:
    now = dt.datetime.now(dt.UTC)
    return {
        "valid_from": now + dt.timedelta(days=days_from),
        "valid_until": now + dt.timedelta(days=days_until),
    }


def agreement(
    db: Session,
    *,
    recipient: str,
    dataset: str,
    columns: dict[str, str],
    purpose: str = "public_health_surveillance",
    approve: bool = True,
    requester: Actor | None = None,
    **options: Any,
) -> Agreement:
    """Request (as the recipient's analyst) and approve (as the provider's steward)."""
    row_filter = options.pop("row_filter", None)
    dates = window(*options.pop("window", (-1, 30)))
    data = AgreementRequest(
        title=f"{dataset} for {recipient}",
        recipient=recipient,
        purpose=purpose,
        legal_basis="Public health act, section 12",
        datasets=[{"dataset": dataset, "columns": columns, "row_filter": row_filter}],  # type: ignore[list-item]
        **dates,
        **options,
    )
    who = requester or person(db, recipient, Role.analyst)
    made = policy.request_agreement(db=db, actor=who, data=data)
    if approve:
        steward = person(db, dataset.split(".")[0], Role.steward)
        policy.approve_agreement(db=db, actor=steward, agreement_id=made.public_id)
    return made
