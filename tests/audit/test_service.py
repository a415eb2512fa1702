"""Recording, the stored tree, checkpoints and reads, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import datetime as dt
import json
import multiprocessing
import os
import signal
import threading
from collections import Counter
from collections.abc import Callable
from functools import partial

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from civicshare import crypto
from civicshare.agency import service as agency
from civicshare.agency.models import AgencyCreate, Role, TokenCreate, UserCreate
from civicshare.audit import merkle
from civicshare.audit import service as audit
from civicshare.audit.models import AuditEntry, AuditNode, AuditSigningKey
from civicshare.audit.note import open_checkpoint
from civicshare.db import Database
from civicshare.errors import Conflict, Invalid, NotFound, Unauthenticated
from civicshare.hub import Hub
from civicshare.permissions import CLI_ADMIN, Actor
from civicshare.query import service as query


class ActionFailed(Exception):
    pass


def records(hub: Hub) -> list[dict[str, object]]:
    with hub.db.session() as db:
        rows = db.scalars(sa.select(AuditEntry.record).order_by(AuditEntry.index))
        return [json.loads(row) for row in rows]


def actions(hub: Hub) -> Counter[str]:
    return Counter(str(entry["action"]) for entry in records(hub))


def memory_tree(hub: Hub) -> merkle.MemoryTree:
    with hub.db.session() as db:
        rows = db.scalars(sa.select(AuditEntry.record).order_by(AuditEntry.index))
        return merkle.MemoryTree.of_records(rows)


def fail_after(hub: Hub, step: Callable[[Session], object]) -> None:
    """An action that fails after its audit write: its transaction rolls back."""
    with hub.db.session() as db:
        step(db)
        raise ActionFailed("after the audit write")


def committing(hub: Hub, step: Callable[..., object]) -> None:
    """Run a step and commit even if it raises, as adapters do for authentication failures."""
    with hub.db.session() as db:
        try:
            step(db=db)
        finally:
            db.commit()


def add_agency(hub: Hub, slug: str) -> None:
    with hub.db.session() as db:
        agency.create_agency(db=db, actor=CLI_ADMIN, data=AgencyCreate(slug=slug, title=slug))


def test_record_is_canonical_json_with_the_event_fields(hub: Hub, db: Session) -> None:
    actor = Actor(email="ana@city.example", role=Role.analyst, agency_slug="health", user_id=3)
    recorded = audit.record(
        db,
        actor=actor,
        action="query.run",
        agency="health",
        resource="health.cases",
        version=4,
        agreement="agr_1",
        purpose="surveillance",
        query_sha256=audit.sha256_hex("select 1"),
        result_sha256=audit.sha256_hex(b"result"),
        rows=12,
    )
    body = json.loads(recorded.record)
    assert recorded.record == json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    assert recorded.leaf_hash == merkle.leaf_hash(recorded.record)
    assert body["index"] == recorded.index == 0
    assert body["time"].endswith("Z")
    assert body["actor"] == {
        "email": "ana@city.example",
        "role": "analyst",
        "kind": "person",
        "agency": "health",
    }
    assert body["outcome"] == "allowed"
    assert body["query_sha256"] == audit.sha256_hex("select 1")
    assert (body["resource"], body["version"], body["rows"]) == ("health.cases", 4, 12)
    assert "reason" not in body


def test_indexes_are_sequential_across_transactions(hub: Hub) -> None:
    for _ in range(5):
        with hub.db.session() as db:
            audit.record(db, actor=None, action="test.event")
    assert [entry["index"] for entry in records(hub)] == list(range(5))


def test_failed_action_leaves_neither_its_change_nor_its_record(hub: Hub) -> None:
    add_agency(hub, "health")
    before = records(hub)
    with pytest.raises(ActionFailed):
        fail_after(
            hub,
            lambda db: agency.create_agency(
                db=db, actor=CLI_ADMIN, data=AgencyCreate(slug="parks", title="P")
            ),
        )
    assert records(hub) == before
    with hub.db.session() as db, pytest.raises(Exception, match="parks"):
        agency.get_agency(db=db, slug="parks")
    add_agency(hub, "parks")
    assert [entry["index"] for entry in records(hub)] == list(range(len(before) + 1)), "no gap"


def test_record_denied_commits_on_its_own(hub: Hub) -> None:
    actor = Actor(email="ana@city.example", role=Role.analyst)
    with pytest.raises(ActionFailed):  # the action's own record is rolled back with it
        fail_after(hub, lambda db: audit.record(db, actor=actor, action="dataset.read"))
    audit.record_denied(hub.db, actor=actor, action="dataset.read", reason="no_agreement")
    assert [(e["action"], e["outcome"], e.get("reason")) for e in records(hub)] == [
        ("dataset.read", "denied", "no_agreement")
    ]


def test_every_foundation_action_is_recorded_exactly_once(hub: Hub) -> None:
    add_agency(hub, "health")
    with hub.db.session() as db:
        agency.create_user(
            db=db,
            actor=CLI_ADMIN,
            data=UserCreate(
                email="steward@city.example",
                display_name="S",
                role=Role.steward,
                agency="health",
                password="correct horse battery",
            ),
        )
    with hub.db.session() as db:
        token, secret = agency.create_token(
            db=db,
            actor=CLI_ADMIN,
            data=TokenCreate(user="steward@city.example"),
            default_ttl_days=1,
        )
    with hub.db.session() as db:
        agency.authenticate_password(
            db=db, email="steward@city.example", password="correct horse battery"
        )
    with hub.db.session() as db:
        agency.set_password(
            db=db, actor=CLI_ADMIN, email="steward@city.example", password="another long one"
        )
    for attempt in ["wrong password!", "unknown"]:
        email = "steward@city.example" if attempt != "unknown" else "nobody@city.example"
        with pytest.raises(Unauthenticated):
            committing(
                hub,
                partial(agency.authenticate_password, email=email, password=attempt),
            )
    with hub.db.session() as db:
        agency.revoke_token(db=db, actor=CLI_ADMIN, token_id=token.public_id)
    for bad in [secret, crypto.new_api_token()]:
        with pytest.raises(Unauthenticated):
            committing(hub, partial(agency.authenticate_token, secret=bad))
    assert actions(hub) == {
        "agency.create": 1,
        "user.create": 1,
        "token.create": 1,
        "auth.login": 1,
        "user.set_password": 1,
        "auth.login_failed": 2,
        "token.revoke": 1,
        "auth.token_failed": 2,
    }
    failures = [e for e in records(hub) if e["action"] == "auth.token_failed"]
    assert {e["reason"] for e in failures} == {"revoked", "unknown_token"}
    assert all(secret not in json.dumps(e) for e in records(hub)), "no secret is ever recorded"
    assert all("correct horse" not in json.dumps(e) for e in records(hub))


def test_signing_key_is_created_at_init_and_stored_wrapped(hub: Hub) -> None:
    with hub.db.session() as db:
        key = db.scalars(sa.select(AuditSigningKey)).one()
        seed = hub.keys.unwrap(
            key.wrapped_private_key, context=b"audit-signing-key:" + key.name.encode()
        )
        assert seed not in key.wrapped_private_key
        assert str(audit.verifier(db)).startswith("civicshare/audit+")


def test_checkpoint_signs_the_root_of_the_records_and_proofs_verify(hub: Hub) -> None:
    for i in range(37):
        with hub.db.session() as db:
            audit.record(db, actor=None, action="test.event", rows=i)
    with hub.db.session() as db:
        note = audit.checkpoint(db, hub).note
        key = audit.verifier(db)
    tree = memory_tree(hub)
    checkpoint = open_checkpoint(note, key)
    assert (checkpoint.size, checkpoint.root) == (37, tree.root())
    with hub.db.session() as db:
        for index in (0, 17, 36):
            proof = audit.inclusion_proof(db, index=index)
            path = [base64.b64decode(value) for value in proof.audit_path]
            merkle.verify_inclusion(index, 37, tree.leaf(index), path, checkpoint.root)
        for first in (0, 1, 16, 20, 37):
            proof = audit.consistency_proof(db, first=first, second=37)
            path = [base64.b64decode(value) for value in proof.consistency]
            merkle.verify_consistency(first, 37, tree.root(first), tree.root(37), path)


def test_checkpoint_is_reused_until_the_log_grows(hub: Hub) -> None:
    with hub.db.session() as db:
        audit.record(db, actor=None, action="test.event")
    with hub.db.session() as db:
        first = audit.checkpoint(db, hub).note
    with hub.db.session() as db:
        assert audit.checkpoint(db, hub).note == first
        audit.record(db, actor=None, action="test.event")
    with hub.db.session() as db:
        assert open_checkpoint(audit.checkpoint(db, hub).note, audit.verifier(db)).size == 2


def test_hub_refuses_to_sign_a_checkpoint_inconsistent_with_the_last(hub: Hub) -> None:
    for _ in range(8):
        with hub.db.session() as db:
            audit.record(db, actor=None, action="test.event")
    with hub.db.session() as db:
        signed = audit.checkpoint(db, hub)
        audit.record(db, actor=None, action="test.event")
    with hub.db.session() as db:  # someone rewrites a stored interior node
        db.execute(sa.update(AuditNode).values(hash=b"\x00" * 32))
    with pytest.raises(Conflict) as caught, hub.db.session() as db:
        audit.checkpoint(db, hub)
    assert caught.value.code == "audit_log_damaged"
    with hub.db.session() as db:
        assert audit.latest_checkpoint_size(db) == signed.size


def test_proof_requests_out_of_range_are_clear_errors(hub: Hub) -> None:
    with hub.db.session() as db:
        audit.record(db, actor=None, action="test.event")
    with hub.db.session() as db:
        for call in (
            lambda: audit.inclusion_proof(db, index=1, size=1),
            lambda: audit.inclusion_proof(db, index=0, size=2),
            lambda: audit.consistency_proof(db, first=2, second=1),
            lambda: audit.consistency_proof(db, first=0, second=5),
        ):
            with pytest.raises(Invalid):
                call()


def test_bounds_beyond_the_log_read_nothing_rather_than_fail(hub: Hub) -> None:
    """The API takes indexes up to 2**62; PostgreSQL keeps the index in 32 bits and refused to
    compare it with a larger parameter (an internal error, a 500 over HTTP)."""
    with hub.db.session() as db:
        for number in range(3):
            audit.record(db, actor=None, action=f"test.event{number}")
    far = 2**31
    with hub.db.read_session() as db:
        assert audit.entries(db, actor=CLI_ADMIN, start=far, end=far + 5).entries == []
        tail = audit.entries(db, actor=CLI_ADMIN, start=2, end=2**62)
        assert [e.index for e in tail.entries] == [2]
        for before in (far, 2**62):
            listed = audit.list_records(db, actor=CLI_ADMIN, before=before).records
            assert [r.index for r in listed] == [2, 1, 0]


def test_who_reads_which_records(hub: Hub) -> None:
    add_agency(hub, "health")
    add_agency(hub, "police")
    steward = Actor(email="s@h", role=Role.steward, agency_id=1, agency_slug="health")
    analyst = Actor(email="a@p", role=Role.analyst, agency_id=2, agency_slug="police")
    auditor = Actor(email="au@h", role=Role.auditor, agency_id=1, agency_slug="health")
    with hub.db.session() as db:
        audit.record(db, actor=analyst, action="query.run", agency="health", resource="health.x")
        audit.record(db, actor=analyst, action="query.run", agency="police", resource="police.y")
        audit.record(db, actor=steward, action="dataset.create", agency="health")
    with hub.db.session() as db:
        seen = {
            who.email: [r.index for r in audit.list_records(db, actor=who).records]
            for who in (steward, analyst, auditor)
        }
        assert seen == {"s@h": [4, 2, 0], "a@p": [3, 2], "au@h": [4, 3, 2, 1, 0]}
        assert [e.index for e in audit.entries(db, actor=analyst, start=0, end=10).entries] == [
            2,
            3,
        ]
        only = audit.RecordFilter(action="query", agency="police")
        assert [r.index for r in audit.list_records(db, actor=auditor, where=only).records] == [3]
        page = audit.list_records(db, actor=auditor, limit=2)
        assert [r.index for r in page.records] == [4, 3]
        assert page.next_before == 3
        rest = audit.list_records(db, actor=auditor, before=page.next_before)
        assert [r.index for r in rest.records] == [2, 1, 0]
        with pytest.raises(Invalid):
            audit.list_records(db, actor=auditor, where=audit.RecordFilter(outcome="maybe"))


def test_stewards_read_records_of_queries_across_agencies_and_denials(hub: Hub) -> None:
    for slug in ("health", "housing", "police", "health_x"):
        add_agency(hub, slug)
    health = Actor(email="s@h", role=Role.steward, agency_id=1, agency_slug="health")
    housing = Actor(email="s@ho", role=Role.steward, agency_id=2, agency_slug="housing")
    police = Actor(email="s@p", role=Role.steward, agency_id=3, agency_slug="police")
    analyst = Actor(email="a@p", role=Role.analyst, agency_id=3, agency_slug="police")
    with hub.db.session() as db:
        joined = audit.record(
            db, actor=analyst, action="query.run", resource="housing.people@v2,health.cases"
        ).index
        other = audit.record(db, actor=analyst, action="query.run", resource="health_x.cases")
    denied = audit.record_denied(
        hub.db, actor=analyst, action="query.run", reason="no_agreement", resource="health.cases"
    ).index
    with hub.db.session() as db:

        def seen(who: Actor) -> set[int]:
            found = {e.index for e in audit.entries(db, actor=who, start=0, end=100).entries}
            listed = {r.index for r in audit.list_records(db, actor=who).records}
            assert found == listed
            return found

        assert {joined, denied} <= seen(health)
        assert other.index not in seen(health)  # health_x is another agency
        assert joined in seen(housing)
        assert denied not in seen(housing)
        assert not {joined, denied} & seen(police)  # its analyst's actions, not its datasets'
        assert {joined, denied, other.index} <= seen(analyst)
        about_health = audit.RecordFilter(agency="health")
        filtered = audit.list_records(db, actor=CLI_ADMIN, where=about_health).records
        assert {joined, denied} <= {r.index for r in filtered}
        assert other.index not in {r.index for r in filtered}


def test_a_query_naming_many_datasets_is_recorded_with_all_of_them(hub: Hub) -> None:
    """Three refs of long slugs pass 255 characters: PostgreSQL refused the record (a 500, and
    the denial went unrecorded) when ``resource`` was a varchar(255)."""
    long = "x" * 56
    slugs = [f"{long}_{n}" for n in ("one", "two", "six")]
    for slug in slugs:
        add_agency(hub, slug)
    refs = [f"{slug}.{long}_data" for slug in slugs]
    analyst = Actor(email="a@p", role=Role.analyst)
    sql = f"SELECT * FROM {refs[0]}, {refs[1]}, {refs[2]}"
    with hub.db.session() as db, pytest.raises(NotFound) as refused:
        query.run_query(db=db, hub=hub, actor=analyst, sql=sql, purpose=None)
    assert refused.value.code == "dataset_not_found"
    (denial,) = [r for r in records(hub) if r["action"] == "query.run"]
    assert denial["outcome"] == "denied"
    assert denial["resource"] == ",".join(refs)
    last = Actor(email="s@x", role=Role.steward, agency_id=3, agency_slug=slugs[2])
    with hub.db.session() as db:
        seen = audit.list_records(db, actor=last, where=audit.RecordFilter(action="query"))
    assert [r.record["resource"] for r in seen.records] == [",".join(refs)]


def test_time_filters_at_the_ends_of_the_calendar_are_bounds_not_errors(hub: Hub) -> None:
    with hub.db.session() as db:
        for number in range(3):
            audit.record(db, actor=None, action=f"test.event{number}")
    east, west = dt.timezone(dt.timedelta(hours=5)), dt.timezone(dt.timedelta(hours=-5))
    earliest = dt.datetime(1, 1, 1, tzinfo=east)  # before 0001-01-01 in UTC
    latest = dt.datetime(9999, 12, 31, 23, 59, tzinfo=west)  # after 9999-12-31 in UTC
    with hub.db.session() as db:
        everything = [r.index for r in audit.list_records(db, actor=CLI_ADMIN).records]
        for where, expected in (
            (audit.RecordFilter(since=earliest), everything),
            (audit.RecordFilter(until=latest), everything),
            (audit.RecordFilter(until=earliest), []),
            (audit.RecordFilter(since=latest), []),
        ):
            found = audit.list_records(db, actor=CLI_ADMIN, where=where).records
            assert [r.index for r in found] == expected


# ---------------------------------------------------------------------------- processes


def _append_many(url: str, count: int, tag: str) -> None:
    database = Database(url)
    for i in range(count):
        with database.session() as db:
            audit.record(db, actor=None, action="test.concurrent", details={"w": tag, "i": i})
    database.dispose()


def test_concurrent_processes_get_unique_gap_free_indexes_and_one_tree(hub: Hub) -> None:
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_append_many, args=(hub.db.url, 40, f"w{n}")) for n in range(4)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    entries = records(hub)
    assert [entry["index"] for entry in entries] == list(range(160))
    assert Counter(str(e["details"]["w"]) for e in entries) == {f"w{n}": 40 for n in range(4)}  # type: ignore[index]
    with hub.db.session() as db:
        checkpoint = open_checkpoint(audit.checkpoint(db, hub).note, audit.verifier(db))
    assert (checkpoint.size, checkpoint.root) == (160, memory_tree(hub).root())


def _commit_then_hang(url: str, report: multiprocessing.Queue[int]) -> None:
    database = Database(url)
    with database.session() as db:
        durable = audit.record(db, actor=None, action="test.durable")
    report.put(durable.index)  # the action has returned: from here on the record must survive
    with database.session() as db:
        audit.record(db, actor=None, action="test.unfinished")
        report.put(-1)
        threading.Event().wait()  # killed here, inside the second action's transaction


def test_record_survives_kill_9_once_its_action_returned(hub: Hub) -> None:
    """A hub killed mid-action keeps every returned record, loses the unfinished one, and the
    log goes on gap-free: the killed writer's index lock (row lock / write turn) is released."""
    context = multiprocessing.get_context("spawn")
    report: multiprocessing.Queue[int] = context.Queue()
    worker = context.Process(target=_commit_then_hang, args=(hub.db.url, report))
    worker.start()
    durable = report.get(timeout=120)
    assert report.get(timeout=120) == -1
    assert worker.pid is not None
    os.kill(worker.pid, signal.SIGKILL)
    worker.join(60)
    with hub.db.session() as db:
        after = audit.record(db, actor=None, action="test.after")
    assert after.index == durable + 1
    kept = [(entry["index"], entry["action"]) for entry in records(hub)]
    assert kept[-2:] == [(durable, "test.durable"), (durable + 1, "test.after")]
    assert "test.unfinished" not in {action for _index, action in kept}
