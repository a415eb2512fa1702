"""Agreement lifecycle, validation, permissions, ODRL export and objections."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from sqlalchemy import select

from civicshare.agency.models import Role
from civicshare.audit import service as audit
from civicshare.audit.models import AuditEntry
from civicshare.errors import CivicshareError, Conflict, Forbidden, Invalid
from civicshare.hub import Hub
from civicshare.policy import service as policy
from civicshare.policy.models import AgreementRead, ObjectionCreate, State
from civicshare.policy.odrl import odrl_agreement
from tests.policy.kit import agreement, cases_table, publish
from tests.support.datasets import person


@pytest.fixture
def city(hub: Hub) -> Hub:
    with hub.db.session() as db:
        publish(db, hub, "health.cases", cases_table(50))
        person(db, "fire_ems", Role.analyst)
        person(db, "fire_ems", Role.steward)
        person(db, "police", Role.analyst)
    return hub


def audit_records(hub: Hub, action: str) -> list[dict[str, Any]]:
    with hub.db.session() as db:
        rows = db.scalars(select(AuditEntry).where(AuditEntry.action == action))
        return [json.loads(row.record) for row in rows]


@pytest.mark.parametrize(
    ("options", "code"),
    [
        ({"columns": {"nope": "clear"}}, "unknown_column"),
        ({"columns": {"zip": "year_only"}}, "treatment_not_applicable"),
        ({"columns": {"zip": "generalise(width=5)"}}, "treatment_not_applicable"),
        ({"columns": {"zip": "clear"}, "row_filter": "zip IN (SELECT 1)"}, "invalid_row_filter"),
        ({"columns": {"zip": "clear"}, "row_filter": "secret_col = 1"}, "invalid_row_filter"),
        ({"columns": {"zip": "clear"}, "row_filter": "1=1) OR (1=1"}, "invalid_row_filter"),
        ({"columns": {"zip": "clear"}, "row_filter": "getenv('x') = ''"}, "invalid_row_filter"),
        ({"columns": {"diagnosis": "clear"}}, "sensitive_requires_justification"),
        (
            {"columns": {"diagnosis": "clear"}, "allow_sensitive": True,
             "sensitive_justification": "because"},
            "sensitive_requires_justification",
        ),
        ({"columns": {"zip": "clear"}, "window": (5, 1)}, "invalid_window"),
    ],
)  # fmt: skip
def test_bad_requests_are_422_and_create_nothing(
    city: Hub, options: dict[str, Any], code: str
) -> None:
    with pytest.raises(Invalid) as caught, city.db.session() as db:
        agreement(db, recipient="fire_ems", dataset="health.cases", approve=False, **options)
    assert caught.value.code == code
    with city.db.session() as db:
        admin = person(db, "health", Role.steward)
        assert policy.list_agreements(db=db, actor=admin) == []


def test_sensitive_in_clear_with_justification_is_recorded(city: Hub) -> None:
    reason = "Ambulance crews need the diagnosis to choose protective equipment"
    with city.db.session() as db:
        agreement(
            db,
            recipient="fire_ems",
            dataset="health.cases",
            columns={"diagnosis": "clear"},
            allow_sensitive=True,
            sensitive_justification=reason,
        )
    (record,) = audit_records(city, "agreement.request")
    assert record["details"]["sensitive_clear"] == ["health.cases.diagnosis"]
    assert record["details"]["sensitive_justification"] == reason


def test_only_the_providers_steward_decides(city: Hub) -> None:
    with city.db.session() as db:
        made = agreement(
            db,
            recipient="fire_ems",
            dataset="health.cases",
            columns={"zip": "clear"},
            approve=False,
        )
        for outsider in [
            person(db, "health", Role.analyst),
            person(db, "fire_ems", Role.steward),
            person(db, "police", Role.analyst),
        ]:
            with pytest.raises(CivicshareError) as caught:
                policy.approve_agreement(db=db, actor=outsider, agreement_id=made.public_id)
            assert caught.value.status in {403, 404}
        with pytest.raises(Forbidden):
            policy.request_agreement(
                db=db,
                actor=person(db, "police", Role.analyst),
                data=_request_for("fire_ems"),
            )


def _request_for(recipient: str) -> Any:
    from civicshare.policy.models import AgreementRequest
    from tests.policy.kit import window

    return AgreementRequest(
        title="x",
        recipient=recipient,
        purpose="research",
        legal_basis="y",
        datasets=[{"dataset": "health.cases", "columns": {"zip": "clear"}}],  # type: ignore[list-item]
        **window(),
    )


def test_lifecycle_transitions_and_their_audit(city: Hub) -> None:
    with city.db.session() as db:
        steward = person(db, "health", Role.steward)
        made = agreement(
            db,
            recipient="fire_ems",
            dataset="health.cases",
            columns={"zip": "clear"},
            approve=False,
        )
        assert made.state() is State.requested
        policy.approve_agreement(db=db, actor=steward, agreement_id=made.public_id)
        assert made.state() is State.active
        with pytest.raises(Conflict):
            policy.approve_agreement(db=db, actor=steward, agreement_id=made.public_id)
        policy.revoke_agreement(db=db, actor=steward, agreement_id=made.public_id)
        assert made.state() is State.revoked
        with pytest.raises(Conflict):
            policy.revoke_agreement(db=db, actor=steward, agreement_id=made.public_id)
        rejected = agreement(
            db,
            recipient="fire_ems",
            dataset="health.cases",
            columns={"zip": "clear"},
            approve=False,
        )
        policy.reject_agreement(db=db, actor=steward, agreement_id=rejected.public_id, reason="no")
        with pytest.raises(Conflict):
            policy.approve_agreement(db=db, actor=steward, agreement_id=rejected.public_id)
    for action in [
        "agreement.request",
        "agreement.approve",
        "agreement.revoke",
        "agreement.reject",
    ]:
        assert audit_records(city, action), action


def test_an_expired_agreement_is_recorded_once_when_the_hub_notices(city: Hub) -> None:
    with city.db.session() as db:
        made = agreement(db, recipient="fire_ems", dataset="health.cases", columns={"zip": "clear"})
        pending = agreement(
            db,
            recipient="fire_ems",
            dataset="health.cases",
            columns={"zip": "clear"},
            approve=False,
        )
        later = made.valid_until + dt.timedelta(days=1)
        assert policy.record_expiries(db=db, now=made.valid_until - dt.timedelta(seconds=1)) == []
    assert audit_records(city, "agreement.expire") == []
    with city.db.session() as db:
        expired = policy.record_expiries(db=db, now=later)
    # Only approved agreements expire: a request nobody decided never had a window.
    assert [a.public_id for a in expired] == [made.public_id]
    assert pending.public_id not in {a.public_id for a in expired}
    with city.db.session() as db:
        assert policy.record_expiries(db=db, now=later) == []  # the next sweep finds it done
    (record,) = audit_records(city, "agreement.expire")
    assert record["actor"] is None  # nobody acted: the hub recorded it
    assert (record["agreement"], record["resource"]) == (made.public_id, made.public_id)
    assert (record["agency"], record["purpose"]) == ("health", made.purpose)
    assert record["details"] == {"valid_until": audit.timestamp(made.valid_until)}


def test_a_failed_sweep_records_nothing_and_the_next_one_records_it(city: Hub) -> None:
    with city.db.session() as db:
        made = agreement(db, recipient="fire_ems", dataset="health.cases", columns={"zip": "clear"})
    later = made.valid_until + dt.timedelta(days=1)

    def failing_sweep() -> None:
        with city.db.session() as db:
            assert len(policy.record_expiries(db=db, now=later)) == 1
            raise RuntimeError("the sweep's transaction fails after its record")

    with pytest.raises(RuntimeError, match="fails after its record"):
        failing_sweep()
    assert audit_records(city, "agreement.expire") == []
    with city.db.session() as db:
        assert len(policy.record_expiries(db=db, now=later)) == 1
    assert len(audit_records(city, "agreement.expire")) == 1


def test_the_sweep_records_what_is_due_in_a_unit_of_work_of_its_own(city: Hub) -> None:
    assert policy.sweep_expiries(city.db) == 0  # nothing due: nothing recorded
    with city.db.session() as db:
        made = agreement(
            db,
            recipient="fire_ems",
            dataset="health.cases",
            columns={"zip": "clear"},
            window=(-10, -1),
        )
    assert policy.sweep_expiries(city.db) == 1
    assert policy.sweep_expiries(city.db) == 0
    assert [r["agreement"] for r in audit_records(city, "agreement.expire")] == [made.public_id]


def test_revoking_an_agreement_past_its_window_records_its_expiry_first(city: Hub) -> None:
    with city.db.session() as db:
        steward = person(db, "health", Role.steward)
        made = agreement(
            db,
            recipient="fire_ems",
            dataset="health.cases",
            columns={"zip": "clear"},
            window=(-10, -1),
        )
        assert made.state() is State.expired
        policy.revoke_agreement(db=db, actor=steward, agreement_id=made.public_id)
    with city.db.session() as db:
        assert policy.record_expiries(db=db) == []  # revoked, and its expiry already recorded
    with city.db.session() as db:
        rows = db.scalars(
            select(AuditEntry.action)
            .where(AuditEntry.resource == made.public_id)
            .order_by(AuditEntry.index)
        )
        assert list(rows)[-2:] == ["agreement.expire", "agreement.revoke"]


def test_outsiders_do_not_see_agreements(city: Hub) -> None:
    with city.db.session() as db:
        made = agreement(db, recipient="fire_ems", dataset="health.cases", columns={"zip": "clear"})
        police = person(db, "police", Role.analyst)
        assert policy.list_agreements(db=db, actor=police) == []
        fire = person(db, "fire_ems", Role.analyst)
        assert [a.public_id for a in policy.list_agreements(db=db, actor=fire)] == [made.public_id]
        assert AgreementRead.of(made).datasets[0].columns == {"zip": "clear"}


def test_odrl_export_carries_purpose_window_and_limits(city: Hub) -> None:
    with city.db.session() as db:
        made = agreement(
            db,
            recipient="fire_ems",
            dataset="health.cases",
            columns={"zip": "clear", "resident_id": "pseudonym"},
            aggregate_only=True,
            max_queries_per_day=50,
        )
        document = odrl_agreement(made, base_url="https://hub.example.org")
    assert document["@type"] == "Agreement"
    assert "http://www.w3.org/ns/odrl.jsonld" in document["@context"]
    (permission,) = document["permission"]
    assert permission["action"] == "aggregate"
    assert permission["target"].endswith("/datasets/health.cases")
    operands = {(c["leftOperand"], c["operator"]) for c in permission["constraint"]}
    assert {("purpose", "eq"), ("dateTime", "gteq"), ("dateTime", "lt"), ("count", "lteq")} <= (
        operands
    )
    assert permission["duty"] == [{"action": "anonymize"}]


def test_objections_store_only_a_keyed_hash(city: Hub) -> None:
    with city.db.session() as db:
        steward = person(db, "health", Role.steward)
        data = ObjectionCreate(
            agency="health", field="resident_id", value="R-00007", purposes=["research"]
        )
        made = policy.register_objection(db=db, hub=city, actor=steward, data=data)
        again = policy.register_objection(db=db, hub=city, actor=steward, data=data)
        assert again.public_id == made.public_id
        assert len(made.subject_hash) == 64
        with pytest.raises(Forbidden):
            policy.register_objection(
                db=db, hub=city, actor=person(db, "fire_ems", Role.steward), data=data
            )
    (record, _) = audit_records(city, "objection.register")
    assert "R-00007" not in json.dumps(record)
