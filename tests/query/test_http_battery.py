"""The security battery through the real HTTP API of a hub process (SQLite and PostgreSQL).

Every attack is refused with a 4xx, recorded once in the audit log as denied (with the query's
hash, and no rows or result hash: nothing was read).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from civicshare.audit.models import AuditEntry
from civicshare.config import Settings
from civicshare.db import Database
from civicshare.hub import Hub
from civicshare.permissions import CLI_ADMIN
from civicshare.policy import service as policy
from civicshare.policy.models import AgreementRequest
from tests.policy.kit import cases_table, publish, window
from tests.query.battery import ATTACKS
from tests.support.hubproc import HubProcess

PROTECTED = {"full_name", "diagnosis", "resident_id"}


def _agreement(
    hub: Hub, recipient: str, purpose: str, columns: dict[str, str], **options: Any
) -> str:
    dates = window(*options.pop("window", (-1, 30)))
    revoke = options.pop("revoke", False)
    data = AgreementRequest(
        title=f"battery {recipient}",
        recipient=recipient,
        purpose=purpose,
        legal_basis="Test",
        datasets=[{"dataset": "health.cases", "columns": columns}],  # type: ignore[list-item]
        **dates,
        **options,
    )
    with hub.db.session() as db:
        made = policy.request_agreement(db=db, actor=CLI_ADMIN, data=data)
        policy.approve_agreement(db=db, actor=CLI_ADMIN, agreement_id=made.public_id)
        if revoke:
            policy.revoke_agreement(db=db, actor=CLI_ADMIN, agreement_id=made.public_id)
        return made.public_id


@pytest.fixture(scope="module")
def city(hub_process: HubProcess) -> HubProcess:
    hub = Hub(Settings(home=hub_process.home, database_url=hub_process.database_url))
    with hub.db.session() as db:
        publish(db, hub, "health.cases", cases_table(300))
        publish(db, hub, "police.incidents", cases_table(20), visibility="private")
    granted = {"zip": "clear", "age": "clear", "report_date": "clear", "case_id": "clear"}
    _agreement(hub, "fire_ems", "public_health_surveillance", granted)
    _agreement(
        hub, "housing", "service_delivery", {"zip": "clear", "age": "clear"}, aggregate_only=True
    )
    _agreement(hub, "police", "law_enforcement", granted, revoke=True)
    _agreement(hub, "transport", "statistics", granted, window=(-30, -2))
    hub.close()
    return hub_process


def denial_for(proc: HubProcess, sql: str) -> list[dict[str, Any]]:
    digest = hashlib.sha256(sql.encode()).hexdigest()
    database = Database(proc.database_url)
    try:
        with database.session() as db:
            # In log order: several cases run the same SQL, and the last record is this one's
            # (PostgreSQL returns rows in no particular order without ORDER BY).
            rows = db.scalars(
                select(AuditEntry)
                .where(AuditEntry.action == "query.run")
                .order_by(AuditEntry.index)
            )
            records = [json.loads(row.record) for row in rows]
    finally:
        database.dispose()
    return [r for r in records if r.get("query_sha256") == digest]


def post(client: httpx.Client, sql: str, purpose: str | None, **extra: Any) -> httpx.Response:
    return client.post("/api/v1/query", json={"sql": sql, "purpose": purpose, **extra})


CASES: list[tuple[str, str, str, str | None]] = [
    (label, "fire_ems", sql.format(own="health.cases", other="police.incidents"),
     "public_health_surveillance")
    for label, sql in ATTACKS
] + [
    ("column_direct", "fire_ems", "SELECT full_name FROM health.cases",
     "public_health_surveillance"),
    ("column_exclude", "fire_ems", "SELECT * EXCLUDE (diagnosis) FROM health.cases",
     "public_health_surveillance"),
    ("column_subquery", "fire_ems", "SELECT (SELECT max(resident_id) FROM health.cases) AS x",
     "public_health_surveillance"),
    ("column_join", "fire_ems",
     "SELECT a.zip FROM health.cases a JOIN health.cases b ON a.full_name = b.full_name",
     "public_health_surveillance"),
    ("column_lateral", "fire_ems",
     "SELECT t.* FROM health.cases a, LATERAL (SELECT a.diagnosis AS d) t",
     "public_health_surveillance"),
    ("column_struct", "fire_ems", "SELECT c.full_name FROM health.cases c",
     "public_health_surveillance"),
    ("wrong_purpose", "fire_ems", "SELECT zip FROM health.cases", "research"),
    ("no_purpose", "fire_ems", "SELECT zip FROM health.cases", None),
    ("unknown_purpose", "fire_ems", "SELECT zip FROM health.cases", "curiosity"),
    ("revoked", "police", "SELECT zip FROM health.cases", "law_enforcement"),
    ("expired", "transport", "SELECT zip FROM health.cases", "statistics"),
    ("no_agreement", "transport", "SELECT * FROM police.incidents", "statistics"),
    ("aggregate_star", "housing", "SELECT * FROM health.cases", "service_delivery"),
    ("aggregate_rows", "housing", "SELECT zip, age FROM health.cases", "service_delivery"),
    ("aggregate_limit", "housing",
     "SELECT zip, count(*) FROM health.cases GROUP BY zip ORDER BY zip LIMIT 1",
     "service_delivery"),
    ("aggregate_having", "housing",
     "SELECT zip, count(*) FROM health.cases GROUP BY zip HAVING count(*) = 1",
     "service_delivery"),
    ("aggregate_max", "housing", "SELECT zip, max(age) FROM health.cases GROUP BY zip",
     "service_delivery"),
    ("aggregate_min", "housing", "SELECT zip, min(age) FROM health.cases GROUP BY zip",
     "service_delivery"),
    ("aggregate_arg_max", "housing",
     "SELECT zip, arg_max(zip, age) FROM health.cases GROUP BY zip", "service_delivery"),
    ("aggregate_sum_distinct", "housing",
     "SELECT zip, sum(DISTINCT age) FROM health.cases GROUP BY zip", "service_delivery"),
    ("aggregate_sum_expression", "housing",
     "SELECT zip, sum(age * age) FROM health.cases GROUP BY zip", "service_delivery"),
    ("aggregate_sum_text", "housing", "SELECT zip, sum(zip) FROM health.cases GROUP BY zip",
     "service_delivery"),
    ("aggregate_sum_not_granted", "housing",
     "SELECT zip, sum(case_id) FROM health.cases GROUP BY zip", "service_delivery"),
    ("aggregate_avg_filter", "housing",
     "SELECT zip, avg(age) FILTER (WHERE age > 90) FROM health.cases GROUP BY zip",
     "service_delivery"),
    ("aggregate_sum_arithmetic", "housing",
     "SELECT zip, sum(age) - count(*) FROM health.cases GROUP BY zip", "service_delivery"),
    ("aggregate_sum_having", "housing",
     "SELECT zip, sum(age) FROM health.cases GROUP BY zip HAVING sum(age) > 100",
     "service_delivery"),
    ("aggregate_sum_order", "housing",
     "SELECT zip, sum(age) FROM health.cases GROUP BY zip ORDER BY sum(age) DESC",
     "service_delivery"),
    ("aggregate_sum_window", "housing",
     "SELECT zip, sum(age) OVER () FROM health.cases", "service_delivery"),
]  # fmt: skip


def test_the_battery_has_at_least_forty_cases() -> None:
    assert len(CASES) >= 40


@pytest.mark.parametrize(
    ("label", "agency", "sql", "purpose"), CASES, ids=[case[0] for case in CASES]
)
def test_attack_is_refused_audited_as_denied_and_reads_nothing(
    city: HubProcess, label: str, agency: str, sql: str, purpose: str | None
) -> None:
    with city.as_role("analyst", agency) as client:
        response = post(client, sql, purpose)
    assert 400 <= response.status_code < 500, (label, response.text)
    error = response.json()["error"]
    assert error["code"]
    for word in ["Resident", "influenza", "measles", "R-0"]:
        assert word not in response.text, label
    records = denial_for(city, sql)
    if response.status_code == 422 and error["code"] == "validation_error":
        return  # the request body itself was malformed: no query was attempted
    assert len(records) >= 1, label
    latest = records[-1]
    assert latest["outcome"] == "denied"
    assert latest["reason"] == error["code"]
    assert "rows" not in latest
    assert "result_sha256" not in latest


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM health.cases",
        "SELECT COLUMNS('.*') FROM health.cases",
        "SELECT to_json(c) AS j FROM health.cases c",
        "SELECT * FROM (SELECT * FROM health.cases) s",
    ],
)
def test_star_expansions_are_answered_over_granted_columns_only(city: HubProcess, sql: str) -> None:
    with city.as_role("analyst", "fire_ems") as client:
        response = post(client, sql, "public_health_surveillance", max_rows=5)
    assert response.status_code == 200, response.text
    body = response.json()
    names = {c["name"] for c in body["columns"]}
    assert not names & PROTECTED
    for name in PROTECTED:
        assert name not in response.text
    assert "Resident" not in response.text
    record = denial_for(city, sql)[-1]
    assert record["outcome"] == "allowed"
    assert record["rows"] == len(body["rows"])
    assert record["index"] == body["audit_index"]


def test_a_runaway_query_times_out_while_the_hub_keeps_answering(city: HubProcess) -> None:
    runaway = (
        "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r) "
        "SELECT count(*) FROM r, health.cases"
    )
    outcome: dict[str, httpx.Response] = {}

    def run() -> None:
        with city.as_role("analyst", "fire_ems") as client:
            outcome["response"] = post(client, runaway, "public_health_surveillance", timeout=3)

    worker = threading.Thread(target=run)
    worker.start()
    time.sleep(0.5)
    with city.as_role("analyst", "health") as client:
        while worker.is_alive():
            quick = post(client, "SELECT count(*) FROM health.cases", None)
            assert quick.status_code == 200
            time.sleep(0.2)
    worker.join()
    assert outcome["response"].status_code == 408
    assert outcome["response"].json()["error"]["code"] == "query_timeout"
    assert denial_for(city, runaway)[-1]["reason"] == "query_timeout"


def test_binary_formats_over_http(city: HubProcess) -> None:
    import io

    import pyarrow.ipc as pa_ipc
    import pyarrow.parquet as pq

    sql = "SELECT zip, age FROM health.cases ORDER BY case_id"
    with city.as_role("analyst", "fire_ems") as client:
        arrow = post(client, sql, "public_health_surveillance", format="arrow", max_rows=10)
        parquet = post(client, sql, "public_health_surveillance", format="parquet", max_rows=10)
        csv = post(client, sql, "public_health_surveillance", format="csv", max_rows=10)
    assert arrow.headers["content-type"] == "application/vnd.apache.arrow.stream"
    assert pa_ipc.open_stream(arrow.content).read_all().num_rows == 10
    assert pq.read_table(io.BytesIO(parquet.content)).column_names == ["zip", "age"]
    assert csv.text.splitlines()[0] == '"zip","age"'
    assert arrow.headers["x-civicshare-truncated"] == "true"


def test_aggregate_only_sums_are_released_protected(city: HubProcess) -> None:
    """sum/avg under aggregate_only: answered, small cells withheld, values perturbed."""
    sql = (
        "SELECT zip, count(*) AS n, sum(age) AS total, avg(age) AS mean FROM health.cases "
        "WHERE age < 95 GROUP BY zip ORDER BY zip"
    )
    with city.as_role("analyst", "housing") as client:
        response = post(client, sql, "service_delivery")
    assert response.status_code == 200, response.text
    body = response.json()
    truth: dict[str, list[int]] = {}
    for row in cases_table(300).to_pylist():
        if row["age"] < 95:
            truth.setdefault(row["zip"], []).append(row["age"])
    assert [c["name"] for c in body["columns"]] == ["zip", "n", "total", "mean"]
    for zip_code, n, total, mean in body["rows"]:
        ages = truth[zip_code]
        assert n is not None
        assert abs(total - sum(ages)) <= 0.5 * max(ages) + 0.5
        assert mean * n == pytest.approx(total, abs=0.5)
    record = denial_for(city, sql)[-1]
    assert record["outcome"] == "allowed"
    assert record["agreement"]
