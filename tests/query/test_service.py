"""Governed queries over real datasets (catalog + encrypted storage), on both backends."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from sqlalchemy import select, update

from civicshare.agency.models import Role
from civicshare.audit.models import AuditEntry
from civicshare.errors import CivicshareError, Forbidden, NotFound, RateLimited
from civicshare.hub import Hub
from civicshare.policy import service as policy
from civicshare.policy.models import AgreementDataset, AgreementUsage, Objection, ObjectionCreate
from civicshare.policy.treatments import pseudonym_of
from civicshare.query import service
from civicshare.query.service import run_query
from tests.policy.kit import agreement, cases_table, publish
from tests.support.concurrency import write_held
from tests.support.datasets import person

CASES = cases_table()


def last_audit(hub: Hub) -> dict[str, Any]:
    with hub.db.session() as db:
        entry = db.scalars(select(AuditEntry).order_by(AuditEntry.index.desc())).first()
        assert entry is not None
        record: dict[str, Any] = json.loads(entry.record)
        return record


@pytest.fixture
def city(hub: Hub) -> Hub:
    with hub.db.session() as db:
        publish(db, hub, "health.cases", CASES)
        publish(db, hub, "health.private_notes", CASES.slice(0, 5), visibility="private")
        person(db, "fire_ems", Role.analyst)
        person(db, "housing", Role.analyst)
    return hub


def query(hub: Hub, agency: str, sql: str, purpose: str | None = None, **kw: Any) -> Any:
    with hub.db.session() as db:
        actor = person(db, agency, Role.analyst)
        return run_query(db=db, hub=hub, actor=actor, sql=sql, purpose=purpose, **kw)


def test_own_agency_reads_everything_and_the_query_is_audited(city: Hub) -> None:
    result = query(city, "health", "SELECT count(*) AS n, max(full_name) FROM health.cases")
    assert result.body["rows"][0][0] == CASES.num_rows
    record = last_audit(city)
    assert record["action"] == "query.run"
    assert record["outcome"] == "allowed"
    assert record["rows"] == 1
    assert record["query_sha256"] == result.query_sha256
    assert record["result_sha256"] == result.result_sha256
    assert record["index"] == result.audit_index


def test_an_agreement_grants_treated_columns_and_its_row_filter(city: Hub) -> None:
    with city.db.session() as db:
        made = agreement(
            db,
            recipient="housing",
            dataset="health.cases",
            columns={"resident_id": "pseudonym", "zip": "clear", "age": "generalise(width=10)"},
            purpose="service_delivery",
            row_filter="zip = '94110'",
        )
        agreement_id = made.public_id
    result = query(
        city, "housing", "SELECT * FROM health.cases ORDER BY resident_id", "service_delivery"
    )
    names = [c["name"] for c in result.body["columns"]]
    assert names == ["resident_id", "zip", "age"]
    expected = sorted(
        (pseudonym_of(r["resident_id"], city.keys.derive(b"pseudonym:" + agreement_id.encode())),
         r["age"] // 10 * 10)
        for r in CASES.to_pylist()
        if r["zip"] == "94110"
    )  # fmt: skip
    assert [(row[0], row[2]) for row in result.body["rows"]] == expected
    assert {row[1] for row in result.body["rows"]} == {"94110"}
    record = last_audit(city)
    assert record["agreement"] == agreement_id
    assert record["purpose"] == "service_delivery"


def test_revocation_stops_the_very_next_query(city: Hub) -> None:
    with city.db.session() as db:
        made = agreement(db, recipient="fire_ems", dataset="health.cases", columns={"zip": "clear"})
        agreement_id = made.public_id
    sql = "SELECT zip FROM health.cases LIMIT 1"
    assert query(city, "fire_ems", sql, "public_health_surveillance").rows == 1
    with city.db.session() as db:
        steward = person(db, "health", Role.steward)
        policy.revoke_agreement(db=db, actor=steward, agreement_id=agreement_id, reason="ended")
    with pytest.raises(Forbidden) as caught:
        query(city, "fire_ems", sql, "public_health_surveillance")
    assert caught.value.code == "agreement_revoked"
    record = last_audit(city)
    assert (record["outcome"], record["reason"]) == ("denied", "agreement_revoked")
    assert record["agreement"] == agreement_id
    assert "rows" not in record


def test_a_revocation_while_the_query_runs_withholds_its_result(
    city: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Authorised, then revoked while DuckDB computes: the result is not returned, and the log
    holds a denial, not a read (the check is in the transaction of the record)."""
    with city.db.session() as db:
        made = agreement(db, recipient="fire_ems", dataset="health.cases", columns={"zip": "clear"})
        agreement_id = made.public_id
    running = service.run_plan

    def revoke_then_run(*args: Any, **kwargs: Any) -> Any:
        with city.db.session() as db:
            steward = person(db, "health", Role.steward)
            policy.revoke_agreement(db=db, actor=steward, agreement_id=agreement_id, reason="now")
        return running(*args, **kwargs)

    monkeypatch.setattr(service, "run_plan", revoke_then_run)
    before = last_audit(city)["index"]
    with pytest.raises(Forbidden) as caught:
        query(city, "fire_ems", "SELECT zip FROM health.cases", "public_health_surveillance")
    assert caught.value.code == "agreement_revoked"
    with city.db.session() as db:
        records = [
            json.loads(entry.record)
            for entry in db.scalars(select(AuditEntry).where(AuditEntry.index > before))
        ]
    assert [(r["action"], r["outcome"]) for r in records] == [
        ("agreement.revoke", "allowed"),
        ("query.run", "denied"),
    ]
    assert records[1]["reason"] == "agreement_revoked"
    assert "rows" not in records[1]


def test_a_query_authorises_and_loads_its_data_without_waiting_for_writers(
    city: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only its record waits for the write turn: reading metadata and decrypting the source
    go on while another action holds it (SQLite) or holds rows (PostgreSQL)."""
    with city.db.session() as db:
        analyst = person(db, "health", Role.analyst)
    computing = threading.Event()
    running = service.run_plan

    def signal_then_run(*args: Any, **kwargs: Any) -> Any:
        computing.set()
        return running(*args, **kwargs)

    monkeypatch.setattr(service, "run_plan", signal_then_run)
    results: list[Any] = []

    def run() -> None:
        with city.db.session() as db:
            sql = "SELECT count(*) FROM health.cases"
            results.append(run_query(db=db, hub=city, actor=analyst, sql=sql, purpose=None))

    untouched = update(AgreementUsage).where(AgreementUsage.id == -1).values(rows=0)
    reader = threading.Thread(target=run)
    with write_held(city.db, lambda db: db.execute(untouched)):
        reader.start()
        assert computing.wait(15), "the query waited for the writer before computing"
    reader.join(60)
    assert results[0].body["rows"][0][0] == CASES.num_rows


@pytest.mark.parametrize(
    ("purpose", "window", "code"),
    [
        ("research", (-1, 30), "wrong_purpose"),
        (None, (-1, 30), "purpose_required"),
        ("public_health_surveillance", (-30, -1), "agreement_expired"),
        ("public_health_surveillance", (2, 30), "agreement_not_active"),
    ],
)
def test_wrong_purpose_expired_and_future_agreements_are_refused(
    city: Hub, purpose: str | None, window: tuple[int, int], code: str
) -> None:
    with city.db.session() as db:
        agreement(
            db,
            recipient="fire_ems",
            dataset="health.cases",
            columns={"zip": "clear"},
            window=window,
        )
    with pytest.raises(Forbidden) as caught:
        query(city, "fire_ems", "SELECT zip FROM health.cases", purpose)
    assert caught.value.code == code
    assert last_audit(city)["outcome"] == "denied"


def test_no_agreement_and_hidden_datasets(city: Hub) -> None:
    with pytest.raises(CivicshareError) as caught:
        query(city, "police", "SELECT * FROM health.cases", "law_enforcement")
    assert caught.value.status in {403, 404}
    with pytest.raises(NotFound) as missing:
        query(city, "police", "SELECT * FROM health.nothing_here", "law_enforcement")
    with pytest.raises(NotFound) as hidden:
        query(city, "police", "SELECT * FROM health.private_notes", "law_enforcement")
    assert hidden.value.message.replace("private_notes", "x") == missing.value.message.replace(
        "nothing_here", "x"
    )


def test_aggregate_only_agreement_suppresses_small_cells(city: Hub) -> None:
    with city.db.session() as db:
        agreement(
            db,
            recipient="fire_ems",
            dataset="health.cases",
            columns={"zip": "clear", "diagnosis": "clear", "report_date": "clear"},
            aggregate_only=True,
            allow_sensitive=True,
            sensitive_justification="Outbreak counts by ZIP for ambulance staffing decisions",
        )
    result = query(
        city,
        "fire_ems",
        "SELECT zip, diagnosis, count(*) AS n FROM health.cases "
        "WHERE report_date >= DATE '2026-03-01' GROUP BY zip, diagnosis ORDER BY zip, diagnosis",
        "public_health_surveillance",
    )
    assert result.body["columns"][2] == {"name": "n", "type": "int64"}
    for row in result.body["rows"]:
        assert row[2] is None or row[2] >= 11
    with pytest.raises(Forbidden) as caught:
        query(city, "fire_ems", "SELECT * FROM health.cases", "public_health_surveillance")
    assert caught.value.code == "aggregate_only"


def object_to_service_delivery(city: Hub, resident_id: str) -> Objection:
    """A health steward records the resident's objection to service-delivery use."""
    with city.db.session() as db:
        return policy.register_objection(
            db=db,
            hub=city,
            actor=person(db, "health", Role.steward),
            data=ObjectionCreate(
                agency="health",
                field="resident_id",
                value=resident_id,
                purposes=["service_delivery"],
            ),
        )


def test_objections_exclude_rows_for_their_purposes_only(city: Hub) -> None:
    objector = CASES.to_pylist()[0]["resident_id"]
    with city.db.session() as db:
        agreement(
            db,
            recipient="housing",
            dataset="health.cases",
            columns={"case_id": "clear"},
            purpose="service_delivery",
        )
        agreement(
            db,
            recipient="housing",
            dataset="health.cases",
            columns={"case_id": "clear"},
            purpose="research",
        )
    made = object_to_service_delivery(city, objector)
    assert made.subject_hash != objector
    assert objector not in made.subject_hash
    sql = "SELECT count(*) FROM health.cases WHERE case_id = 1"
    assert query(city, "housing", sql, "service_delivery").body["rows"] == [[0]]
    assert query(city, "housing", sql, "research").body["rows"] == [[1]]


def test_daily_query_limit(city: Hub) -> None:
    with city.db.session() as db:
        agreement(
            db,
            recipient="fire_ems",
            dataset="health.cases",
            columns={"zip": "clear"},
            max_queries_per_day=2,
        )
    sql = "SELECT count(*) FROM health.cases"
    query(city, "fire_ems", sql, "public_health_surveillance")
    query(city, "fire_ems", sql, "public_health_surveillance")
    with pytest.raises(RateLimited):
        query(city, "fire_ems", sql, "public_health_surveillance")


def test_daily_row_limit_caps_and_then_refuses(city: Hub) -> None:
    with city.db.session() as db:
        agreement(
            db,
            recipient="fire_ems",
            dataset="health.cases",
            columns={"zip": "clear", "case_id": "clear"},
            max_rows_per_day=5,
        )
    sql = "SELECT case_id FROM health.cases ORDER BY case_id"
    purpose = "public_health_surveillance"
    first = query(city, "fire_ems", sql, purpose, max_rows=3)
    assert first.rows == 3
    second = query(city, "fire_ems", sql, purpose)  # 2 of the day's 5 rows are left
    assert second.rows == 2
    assert second.truncated
    with pytest.raises(RateLimited):
        query(city, "fire_ems", sql, purpose)


def test_explain_shows_the_policy_without_running(city: Hub) -> None:
    with city.db.session() as db:
        agreement(
            db,
            recipient="fire_ems",
            dataset="health.cases",
            columns={"zip": "generalise(prefix=3)"},
            row_filter="age >= 18",
        )
    result = query(
        city, "fire_ems", "SELECT zip FROM health.cases", "public_health_surveillance", explain=True
    )
    body = result.response()
    assert body["datasets"][0]["columns"] == [{"name": "zip", "treatment": "generalise(prefix=3)"}]
    assert body["datasets"][0]["row_filter"] == "age >= 18"
    assert "__cs_src_0" in body["rewritten_sql"]
    assert last_audit(city)["action"] == "query.explain"


@pytest.mark.parametrize("fmt", ["csv", "arrow", "parquet"])
def test_binary_formats_are_hashed_in_the_audit(city: Hub, fmt: str) -> None:
    import hashlib

    result = query(city, "health", "SELECT zip, age FROM health.cases ORDER BY case_id", fmt=fmt)
    assert result.content
    assert last_audit(city)["result_sha256"] == hashlib.sha256(result.content).hexdigest()


def test_the_row_cap_applies(city: Hub) -> None:
    result = query(city, "health", "SELECT case_id FROM health.cases", max_rows=7)
    assert result.rows == 7
    assert result.body["truncated"] is True


def test_pseudonyms_of_two_agreements_do_not_join(city: Hub) -> None:
    with city.db.session() as db:
        publish(db, city, "housing.tenants", CASES)
        for dataset in ["health.cases", "housing.tenants"]:
            agreement(
                db,
                recipient="fire_ems",
                dataset=dataset,
                columns={"resident_id": "pseudonym"},
                purpose="research",
            )
    joined = query(
        city,
        "fire_ems",
        "SELECT count(*) FROM health.cases a JOIN housing.tenants b USING (resident_id)",
        "research",
    )
    assert joined.body["rows"] == [[0]]
    own = query(
        city,
        "fire_ems",
        "SELECT count(*) FROM health.cases a JOIN health.cases b USING (resident_id)",
        "research",
    )
    assert own.body["rows"] == [[CASES.num_rows]]


def test_policy_view_arrow_gives_treated_filtered_rows(city: Hub) -> None:
    from civicshare.catalog import service as catalog

    with city.db.session() as db:
        agreement(
            db,
            recipient="fire_ems",
            dataset="health.cases",
            columns={"zip": "generalise(prefix=3)", "age": "clear"},
            row_filter="age >= 90",
        )
        actor = person(db, "fire_ems", Role.analyst)
        dataset = catalog.get_dataset(db=db, ref="health.cases")
        view = policy.policy_view(
            db=db, hub=city, actor=actor, dataset=dataset, purpose="public_health_surveillance"
        )
        table = view.arrow().read_all()
    assert table.column_names == ["zip", "age"]
    assert table.num_rows == sum(1 for r in CASES.to_pylist() if r["age"] >= 90)
    assert set(table.column("zip").to_pylist()) == {"941**"}


def test_an_agreement_naming_users_excludes_their_colleagues(city: Hub) -> None:
    with city.db.session() as db:
        named = person(db, "fire_ems", Role.steward)
        agreement(
            db,
            recipient="fire_ems",
            dataset="health.cases",
            columns={"zip": "clear"},
            recipient_users=[named.email],
        )
    sql = "SELECT count(*) FROM health.cases"
    with pytest.raises(Forbidden) as caught:
        query(city, "fire_ems", sql, "public_health_surveillance")  # the analyst
    assert caught.value.code == "no_agreement"
    with city.db.session() as db:
        result = run_query(
            db=db, hub=city, actor=named, sql=sql, purpose="public_health_surveillance"
        )
    assert result.body is not None
    assert result.body["rows"] == [[CASES.num_rows]]


def usage_rows(hub: Hub) -> list[tuple[int, int]]:
    with hub.db.session() as db:
        return [(u.queries, u.rows) for u in db.scalars(select(AgreementUsage))]


def test_only_agreements_with_daily_limits_count_their_queries(city: Hub) -> None:
    with city.db.session() as db:
        agreement(db, recipient="fire_ems", dataset="health.cases", columns={"zip": "clear"})
    sql = "SELECT zip FROM health.cases LIMIT 3"
    query(city, "fire_ems", sql, "public_health_surveillance")
    assert usage_rows(city) == []  # unlimited: the audit log alone records the query
    with city.db.session() as db:
        agreement(
            db,
            recipient="housing",
            dataset="health.cases",
            columns={"zip": "clear"},
            max_rows_per_day=1000,
        )
    query(city, "housing", sql, "public_health_surveillance")
    query(city, "housing", sql, "public_health_surveillance")
    assert usage_rows(city) == [(2, 6)]


def test_a_new_objection_applies_to_the_next_identical_query(city: Hub) -> None:
    # The same text each time: neither the parsed query nor its rewrite may be reused stale.
    objector = CASES.to_pylist()[0]["resident_id"]
    with city.db.session() as db:
        agreement(
            db,
            recipient="housing",
            dataset="health.cases",
            columns={"case_id": "clear"},
            purpose="service_delivery",
        )
    sql = "SELECT count(*) FROM health.cases WHERE case_id = 1"
    assert query(city, "housing", sql, "service_delivery").body["rows"] == [[1]]
    objection_id = object_to_service_delivery(city, objector).public_id
    assert query(city, "housing", sql, "service_delivery").body["rows"] == [[0]]
    with city.db.session() as db:
        steward = person(db, "health", Role.steward)
        policy.withdraw_objection(db=db, actor=steward, objection_id=objection_id)
    assert query(city, "housing", sql, "service_delivery").body["rows"] == [[1]]


def test_a_changed_grant_applies_to_the_next_identical_query(city: Hub) -> None:
    # There is no amendment API yet; an operator's change to the stored grant must still
    # reach the very next query, whatever the query path remembers.
    with city.db.session() as db:
        made = agreement(
            db,
            recipient="fire_ems",
            dataset="health.cases",
            columns={"zip": "clear", "age": "clear"},
            row_filter="age >= 18",
        )
        agreement_id = made.id
    sql = "SELECT DISTINCT zip FROM health.cases WHERE age < 60 ORDER BY zip"
    purpose = "public_health_surveillance"
    first = query(city, "fire_ems", sql, purpose).body["rows"]
    adults = [r for r in CASES.to_pylist() if 18 <= r["age"] < 60]
    assert [row[0] for row in first] == sorted({r["zip"] for r in adults})

    def amend(**values: Any) -> None:
        with city.db.session() as db:
            db.execute(
                update(AgreementDataset)
                .where(AgreementDataset.agreement_id == agreement_id)
                .values(**values)
            )

    amend(columns=[["zip", "generalise(prefix=3)"], ["age", "clear"]])
    assert query(city, "fire_ems", sql, purpose).body["rows"] == [["941**"]]
    amend(row_filter="age >= 60")
    assert query(city, "fire_ems", sql, purpose).body["rows"] == []
    amend(columns=[["age", "clear"]])
    with pytest.raises(Forbidden) as caught:
        query(city, "fire_ems", sql, purpose)
    assert caught.value.code == "column_not_granted"
