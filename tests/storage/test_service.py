"""Encrypted versioned storage against real SQLite/PostgreSQL metadata and a real folder."""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
from pathlib import Path

import pyarrow as pa
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session

from civicshare import crypto
from civicshare.agency import service as agency_service
from civicshare.agency.models import Role
from civicshare.audit.models import AuditEntry
from civicshare.catalog import service as catalog
from civicshare.catalog.models import Dataset
from civicshare.errors import Conflict, Forbidden, Gone, Invalid, NotFound
from civicshare.hub import Hub
from civicshare.permissions import CLI_ADMIN
from civicshare.storage import service as storage
from civicshare.storage.models import AgencyKey, DataKey, DatasetVersion, StorageSegment
from civicshare.storage.segments import StoredFile, segment_path
from tests.support.concurrency import write_held
from tests.support.datasets import make_dataset, person

PLANTED_NAME = "Zephyrine Quillfeather-Oyelaran"
PLANTED_DIAGNOSIS = "XQ-planted-diagnosis-7731"


def people(rows: int, *, start: int = 0, name: str = "Resident") -> pa.Table:
    ids = list(range(start, start + rows))
    return pa.table(
        {
            "person_id": pa.array(ids, pa.int64()),
            "full_name": pa.array([f"{name} {i}" for i in ids], pa.string()),
            "diagnosis": pa.array(
                [None if i % 7 == 0 else f"code-{i % 13}" for i in ids], pa.string()
            ),
            "zip": pa.array([f"{10000 + i % 50}" for i in ids], pa.string()),
            "visited": pa.array(
                [dt.date(2024, 1, 1) + dt.timedelta(days=i % 400) for i in ids], pa.date32()
            ),
            "score": pa.array([i / 3 for i in ids], pa.float64()),
        }
    )


def write(
    db: Session,
    hub: Hub,
    dataset: Dataset,
    table: pa.Table,
    *,
    keep_previous: bool = False,
    operation: str = "replace",
) -> DatasetVersion:
    return storage.write_version(
        db=db,
        hub=hub,
        actor=CLI_ADMIN,
        dataset=dataset,
        batches=table.to_batches(max_chunksize=10_000),
        schema=table.schema,
        keep_previous=keep_previous,
        operation=operation,
    )


def read(db: Session, hub: Hub, dataset: Dataset, **kwargs: object) -> pa.Table:
    return storage.read_version(db=db, hub=hub, dataset=dataset, **kwargs).read_all()  # type: ignore[arg-type]


def test_round_trip_gives_identical_values(hub: Hub, db: Session) -> None:
    dataset = make_dataset(db, "health.cases")
    table = people(25_000)
    version = write(db, hub, dataset, table)
    assert (version.number, version.row_count) == (1, 25_000)
    back = read(db, hub, dataset)
    assert back.schema.equals(catalog.current_schema(db=db, dataset=dataset).arrow_schema())
    assert back.to_pylist() == table.to_pylist()


def test_reads_project_columns_and_reject_unknown_ones(hub: Hub, db: Session) -> None:
    dataset = make_dataset(db, "health.cases")
    table = people(100)
    write(db, hub, dataset, table)
    back = read(db, hub, dataset, columns=["zip", "person_id"])
    assert back.column_names == ["zip", "person_id"]
    assert back.column("zip").to_pylist() == table.column("zip").to_pylist()
    with pytest.raises(Invalid) as error:
        read(db, hub, dataset, columns=["nope"])
    assert error.value.code == "unknown_column"


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    values=st.lists(st.one_of(st.none(), st.text(max_size=40)), min_size=1, max_size=300),
    chunk=st.sampled_from([64, 1000, 4096]),
)
def test_any_text_survives_any_chunk_size(hub: Hub, values: list[str | None], chunk: int) -> None:
    from civicshare.storage.segments import read_segments, write_segments

    schema = pa.schema([pa.field("text", pa.string())])
    table = pa.table({"text": pa.array(values, pa.string())})
    key = bytes(range(32))
    written = write_segments(
        hub.storage,
        dataset_id=999,
        key=key,
        batches=table.to_batches(),
        schema=schema,
        chunk_size=chunk,
    )
    segments = [(s.id, s.path) for s in written]
    batches = list(read_segments(hub.storage, segments, key, schema))
    assert pa.Table.from_batches(batches, schema).column("text").to_pylist() == values


def test_append_keeps_previous_segments_and_time_travel_works(hub: Hub, db: Session) -> None:
    dataset = make_dataset(db, "health.cases")
    first = write(db, hub, dataset, people(10))
    db.commit()
    between = first.created_at + dt.timedelta(microseconds=1)
    time.sleep(0.01)
    second = write(db, hub, dataset, people(5, start=10), keep_previous=True, operation="append")
    third = write(db, hub, dataset, people(3, start=100), operation="replace")
    assert [first.row_count, second.row_count, third.row_count] == [10, 15, 3]
    assert read(db, hub, dataset, version=1).num_rows == 10
    assert read(db, hub, dataset, version=2).column("person_id").to_pylist() == list(range(15))
    assert read(db, hub, dataset).column("person_id").to_pylist() == [100, 101, 102]
    assert read(db, hub, dataset, as_of=between).num_rows == 10
    assert read(db, hub, dataset, as_of=third.created_at).num_rows == 3
    with pytest.raises(NotFound) as error:
        read(db, hub, dataset, as_of=first.created_at - dt.timedelta(seconds=1))
    assert error.value.code == "version_not_found"
    with pytest.raises(NotFound):
        read(db, hub, dataset, version=9)
    assert [v.number for v in storage.list_versions(db=db, dataset=dataset)] == [1, 2, 3]


def test_time_travel_to_a_versions_commit_time_in_milliseconds_finds_it(
    hub: Hub, db: Session
) -> None:
    # Delta Sharing reports commit times in whole milliseconds, and clients travel back to them.
    dataset = make_dataset(db, "health.cases")
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    for number in range(1, 4):
        version = write(db, hub, dataset, people(number))
        db.commit()
        reported = (version.created_at - epoch) // dt.timedelta(milliseconds=1)
        moment = epoch + dt.timedelta(milliseconds=reported)
        assert storage.get_version(db=db, dataset=dataset, as_of=moment).number == number
        time.sleep(0.002)


def test_time_travel_beyond_any_version_is_version_not_found(hub: Hub, db: Session) -> None:
    dataset = make_dataset(db, "health.cases")
    write(db, hub, dataset, people(4))
    east, west = dt.timezone(dt.timedelta(hours=5)), dt.timezone(dt.timedelta(hours=-5))
    future = dt.datetime(9999, 12, 31, 23, 59, tzinfo=west)  # after 9999-12-31 in UTC
    assert storage.get_version(db=db, dataset=dataset, as_of=future).number == 1
    for where in (
        {"as_of": dt.datetime(1, 1, 1, tzinfo=east)},  # before 0001-01-01 in UTC
        {"version": 0},
        {"version": -1},
        {"version": 2**31},
        {"version": 2**63},
        {"version": 2**70},
    ):
        with pytest.raises(NotFound) as error:
            storage.get_version(db=db, dataset=dataset, **where)  # type: ignore[arg-type]
        assert error.value.code == "version_not_found"


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    moment=st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31)),
    offset=st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59),
)
def test_time_travel_to_any_moment_is_a_version_or_none(
    hub: Hub, moment: dt.datetime, offset: int
) -> None:
    with hub.db.session() as db:
        try:
            dataset = catalog.get_dataset(db=db, ref="health.cases")
        except NotFound:  # the first example writes the one version
            dataset = make_dataset(db, "health.cases")
            write(db, hub, dataset, people(2))
        created = storage.list_versions(db=db, dataset=dataset)[0].created_at
        aware = moment.replace(tzinfo=dt.timezone(dt.timedelta(minutes=offset)))
        try:
            found: int | None = storage.get_version(db=db, dataset=dataset, as_of=aware).number
        except NotFound:
            found = None
        assert found == (1 if aware >= created else None)


def test_versions_are_audited_with_counts(hub: Hub, db: Session) -> None:
    dataset = make_dataset(db, "health.cases")
    write(db, hub, dataset, people(42))
    actions = list(db.scalars(sa.select(AuditEntry.action).order_by(AuditEntry.index)))
    assert actions[-3:] == ["key.create", "key.create", "dataset.version"]
    record = db.scalars(sa.select(AuditEntry.record).order_by(AuditEntry.index.desc())).first()
    assert record is not None
    assert b'"rows":42' in record


def test_a_failed_write_leaves_the_previous_version_and_no_files(hub: Hub, db: Session) -> None:
    dataset = make_dataset(db, "health.cases")
    write(db, hub, dataset, people(20))
    db.commit()

    def exploding() -> object:
        yield from people(200_000).to_batches(max_chunksize=50_000)
        raise RuntimeError("disk full")

    def failing_ingest() -> None:
        with hub.db.session() as other:
            storage.write_version(
                db=other,
                hub=hub,
                actor=CLI_ADMIN,
                dataset=catalog.get_dataset(db=other, ref="health.cases"),
                batches=exploding(),  # type: ignore[arg-type]
                schema=people(1).schema,
                keep_previous=True,
                operation="append",
            )

    with pytest.raises(RuntimeError):
        failing_ingest()
    db.expire_all()
    assert read(db, hub, dataset).num_rows == 20
    live = set(db.scalars(sa.select(StorageSegment.path)))
    assert {f.path for f in hub.storage.list_files("datasets")} == live


def test_a_write_refused_after_storing_its_segments_leaves_no_files(hub: Hub, db: Session) -> None:
    dataset = make_dataset(db, "health.cases")
    write(db, hub, dataset, people(20))
    db.commit()
    live = {f.path for f in hub.storage.list_files("datasets")}
    table = people(5, start=100)
    with pytest.raises(Conflict) as error:  # computed from "no version", but version 1 exists
        storage.write_version(
            db=db,
            hub=hub,
            actor=CLI_ADMIN,
            dataset=dataset,
            batches=table.to_batches(),
            schema=table.schema,
            keep_previous=False,
            operation="upsert",
            based_on=0,
        )
    assert error.value.code == "version_conflict"
    db.rollback()
    assert {f.path for f in hub.storage.list_files("datasets")} == live
    assert read(db, hub, dataset).num_rows == 20


def test_gc_removes_only_unreferenced_segments(hub: Hub, db: Session) -> None:
    dataset = make_dataset(db, "health.cases")
    write(db, hub, dataset, people(30))
    write(db, hub, dataset, people(10, start=50), keep_previous=True, operation="append")
    db.commit()
    orphan = segment_path(dataset.id, "0" * 32)
    with hub.storage.open_output(orphan) as out:
        out.write(b"half-written segment")
    live = set(db.scalars(sa.select(StorageSegment.path)))
    dry = storage.collect_garbage(db=db, hub=hub, actor=CLI_ADMIN, min_age=dt.timedelta(0))
    assert dry.orphans == [orphan]
    assert not dry.applied
    assert {f.path for f in hub.storage.list_files("datasets")} == live | {orphan}
    young = storage.collect_garbage(db=db, hub=hub, actor=CLI_ADMIN, apply=True)
    assert young.orphans == []  # too recent: its version might be about to commit
    done = storage.collect_garbage(
        db=db, hub=hub, actor=CLI_ADMIN, apply=True, min_age=dt.timedelta(0)
    )
    assert done.orphans == [orphan]
    assert done.applied
    assert {f.path for f in hub.storage.list_files("datasets")} == live
    assert read(db, hub, dataset, version=1).num_rows == 30
    assert read(db, hub, dataset).num_rows == 40


def test_gc_leaves_the_early_segments_of_a_write_still_in_flight(hub: Hub, db: Session) -> None:
    dataset = make_dataset(db, "health.cases")
    other = make_dataset(db, "health.visits")
    db.commit()
    two_hours_ago = time.time() - 2 * 3600

    def segment_file(dataset_id: int, name: str, *, old: bool) -> str:
        path = segment_path(dataset_id, name * 32)
        with hub.storage.open_output(path) as out:
            out.write(b"sealed chunks")
        if old:
            os.utime(hub.storage.full_path(path), (two_hours_ago, two_hours_ago))
        return path

    # A long ingest wrote its first segment two hours ago and is writing its last one now.
    segment_file(dataset.id, "a", old=True)
    segment_file(dataset.id, "b", old=False)
    crashed = segment_file(other.id, "c", old=True)  # a write that died long ago
    report = storage.collect_garbage(db=db, hub=hub, actor=CLI_ADMIN, apply=True)
    assert report.orphans == [crashed]
    assert len(hub.storage.list_files(f"datasets/{dataset.id}")) == 2


def test_gc_finishes_and_is_audited_when_another_gc_deleted_a_file_first(
    hub: Hub, db: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset = make_dataset(db, "health.cases")
    db.commit()
    orphans = [segment_path(dataset.id, name * 32) for name in "ab"]
    for path in orphans:
        with hub.storage.open_output(path) as out:
            out.write(b"half-written segment")
    listed = hub.storage.list_files

    def listed_then_raced(prefix: str) -> list[StoredFile]:
        files = listed(prefix)
        hub.storage.delete(orphans[0])  # a concurrent gc on another replica got there first
        monkeypatch.undo()
        return files

    monkeypatch.setattr(hub.storage, "list_files", listed_then_raced)
    report = storage.collect_garbage(
        db=db, hub=hub, actor=CLI_ADMIN, apply=True, min_age=dt.timedelta(0)
    )
    assert report.orphans == orphans
    assert hub.storage.list_files("datasets") == []
    assert db.scalars(sa.select(AuditEntry.action).order_by(AuditEntry.index.desc())).first() == (
        "storage.gc"
    )


def test_gc_is_admin_only(hub: Hub, db: Session) -> None:
    steward = person(db, "health")
    with pytest.raises(Forbidden):
        storage.collect_garbage(db=db, hub=hub, actor=steward)


def test_tampered_chunk_fails_authentication(hub: Hub, db: Session) -> None:
    dataset = make_dataset(db, "health.cases")
    write(db, hub, dataset, people(5000))
    segment = db.scalars(sa.select(StorageSegment)).one()
    file = Path(hub.storage.full_path(segment.path))
    data = bytearray(file.read_bytes())
    data[len(data) // 2] ^= 0x01
    file.write_bytes(bytes(data))
    with pytest.raises(Invalid) as error:
        read(db, hub, dataset)
    assert error.value.code == "segment_tampered"
    assert "failed authentication" in error.value.message


def test_reordered_chunks_fail_authentication(hub: Hub, db: Session) -> None:
    from civicshare import crypto
    from civicshare.storage import segments

    key = bytes(32)
    schema = people(1).schema
    written = segments.write_segments(
        hub.storage,
        dataset_id=1,
        key=key,
        batches=people(3000).to_batches(),
        schema=schema,
        chunk_size=1024,
    )
    path = Path(hub.storage.full_path(written[0].path))
    blob = path.read_bytes()
    _, chunk, header = crypto.parse_segment_header(blob)
    sealed = chunk + crypto.CHUNK_OVERHEAD
    first, second = blob[header : header + sealed], blob[header + sealed : header + 2 * sealed]
    path.write_bytes(blob[:header] + second + first + blob[header + 2 * sealed :])
    with pytest.raises(Invalid) as error:
        list(segments.read_segments(hub.storage, [(written[0].id, written[0].path)], key, schema))
    assert error.value.code == "segment_tampered"


def test_swapped_segments_fail_authentication(hub: Hub, db: Session) -> None:
    dataset = make_dataset(db, "health.cases")
    write(db, hub, dataset, people(100))
    write(db, hub, dataset, people(100, start=1000), keep_previous=True, operation="append")
    first, second = db.scalars(sa.select(StorageSegment).order_by(StorageSegment.created_at))
    a, b = Path(hub.storage.full_path(first.path)), Path(hub.storage.full_path(second.path))
    blob_a, blob_b = a.read_bytes(), b.read_bytes()
    a.write_bytes(blob_b)
    b.write_bytes(blob_a)
    with pytest.raises(Invalid) as error:
        read(db, hub, dataset)
    assert error.value.code == "segment_tampered"


def test_truncated_segment_fails_authentication(hub: Hub, db: Session) -> None:
    from civicshare.storage import segments

    key = bytes(32)
    schema = people(1).schema
    written = segments.write_segments(
        hub.storage,
        dataset_id=1,
        key=key,
        batches=people(3000).to_batches(),
        schema=schema,
        chunk_size=1024,
    )
    path = Path(hub.storage.full_path(written[0].path))
    blob = path.read_bytes()
    path.write_bytes(blob[: -(1024 + 28 + 5)])  # drop the last chunk and part of the one before
    with pytest.raises(Invalid) as error:
        list(segments.read_segments(hub.storage, [(written[0].id, written[0].path)], key, schema))
    assert error.value.code == "segment_tampered"


@pytest.mark.parametrize("position", [0, 7, 8, 12, 14])
def test_a_flipped_header_bit_is_segment_tampered(hub: Hub, db: Session, position: int) -> None:
    dataset = make_dataset(db, "health.cases")
    write(db, hub, dataset, people(50))
    segment = db.scalars(sa.select(StorageSegment)).one()
    file = Path(hub.storage.full_path(segment.path))
    data = bytearray(file.read_bytes())
    data[position] ^= 0x01  # magic, chunk size, id length, segment id
    file.write_bytes(bytes(data))
    with pytest.raises(Invalid) as error:
        read(db, hub, dataset)
    assert error.value.code == "segment_tampered"


@pytest.mark.parametrize("kept", [-1, 0, 27, 28, 29])
def test_segment_cut_after_its_header_fails(hub: Hub, db: Session, kept: int) -> None:
    from civicshare import crypto

    dataset = make_dataset(db, "health.cases")
    write(db, hub, dataset, people(500))
    segment = db.scalars(sa.select(StorageSegment)).one()
    file = Path(hub.storage.full_path(segment.path))
    blob = file.read_bytes()
    _, _, header = crypto.parse_segment_header(blob)
    # 28 bytes: what an empty last chunk would be; -1: not even the whole header
    file.write_bytes(blob[: header + kept])
    with pytest.raises(Invalid) as error:
        read(db, hub, dataset)
    assert error.value.code == "segment_tampered"


def test_a_missing_segment_file_or_row_is_segment_missing(hub: Hub, db: Session) -> None:
    dataset = make_dataset(db, "health.cases")
    write(db, hub, dataset, people(20))
    write(db, hub, dataset, people(5, start=50), keep_previous=True, operation="append")
    first, second = db.scalars(sa.select(StorageSegment).order_by(StorageSegment.created_at))
    Path(hub.storage.full_path(second.path)).unlink()
    with pytest.raises(NotFound) as error:
        read(db, hub, dataset)
    assert error.value.code == "segment_missing"
    db.delete(first)
    db.flush()
    with pytest.raises(NotFound) as error:
        read(db, hub, dataset, version=1)
    assert error.value.code == "segment_missing"


def _everything_on_disk(hub: Hub) -> bytes:
    """Every file of the hub home and, on SQLite, of the database's folder (with its WAL)."""
    roots = {Path(hub.settings.home)}
    if hub.db.backend == "sqlite":
        roots.add(Path(str(hub.db.engine.url.database)).parent)
    files = {p for root in roots for p in root.rglob("*") if p.is_file()}
    return b"".join(p.read_bytes() for p in sorted(files))


def _database_dump(hub: Hub, db: Session) -> bytes:
    """Every value of every table (PostgreSQL keeps no file we can grep in the test)."""
    parts = []
    for table in sa.inspect(db.connection()).get_table_names():
        for row in db.execute(sa.text(f'SELECT * FROM "{table}"')):
            parts.append(repr(tuple(row)).encode())
    return b"".join(parts)


def test_no_plaintext_of_personal_or_sensitive_values_at_rest(hub: Hub, db: Session) -> None:
    dataset = make_dataset(db, "health.cases")
    table = people(2000)
    names = table.column("full_name").to_pylist()
    diagnoses = table.column("diagnosis").to_pylist()
    names[1234], diagnoses[777] = PLANTED_NAME, PLANTED_DIAGNOSIS
    table = table.set_column(1, "full_name", pa.array(names)).set_column(
        2, "diagnosis", pa.array(diagnoses)
    )
    write(db, hub, dataset, table)
    db.commit()
    assert read(db, hub, dataset).column("full_name")[1234].as_py() == PLANTED_NAME
    # The SQLite file and its write-ahead log are under the home folder too.
    blob = _everything_on_disk(hub) + _database_dump(hub, db)
    for planted in (PLANTED_NAME, PLANTED_DIAGNOSIS, "Resident 1999"):
        for encoding in ("utf-8", "utf-16-le"):
            assert planted.encode(encoding) not in blob
    segment = db.scalars(sa.select(StorageSegment)).one()
    assert b"PAR1" not in Path(hub.storage.full_path(segment.path)).read_bytes()


def test_purge_destroys_the_key_and_data_becomes_unreadable(hub: Hub, db: Session) -> None:
    dataset = make_dataset(db, "health.cases")
    write(db, hub, dataset, people(50))
    segment = db.scalars(sa.select(StorageSegment)).one()
    storage.purge_dataset(db=db, actor=CLI_ADMIN, dataset=dataset)
    db.commit()
    with pytest.raises(Gone) as error:
        read(db, hub, dataset)
    assert error.value.code == "dataset_purged"
    key = db.scalars(sa.select(DataKey).where(DataKey.dataset_id == dataset.id)).one()
    assert key.wrapped is None
    assert key.destroyed_at is not None
    # The file is still there, but no key left in the hub opens it.
    from civicshare.storage.segments import read_segments

    remaining = [bytes(k) for k in db.scalars(sa.select(AgencyKey.wrapped)) if k]
    assert remaining
    for wrapped in remaining:
        agency_key = db.scalars(sa.select(AgencyKey).where(AgencyKey.wrapped == wrapped)).one()
        kek = hub.keys.unwrap(
            wrapped, context=f"agency-kek:{agency_key.agency_id}:{agency_key.version}".encode()
        )
        with pytest.raises(Invalid):
            list(read_segments(hub.storage, [(segment.id, segment.path)], kek, people(1).schema))
    with pytest.raises(Gone):
        write(db, hub, dataset, people(1))
    actions = list(db.scalars(sa.select(AuditEntry.action).order_by(AuditEntry.index)))
    assert actions[-2:] == ["key.destroy", "dataset.purge"]
    report = storage.collect_garbage(
        db=db, hub=hub, actor=CLI_ADMIN, apply=True, min_age=dt.timedelta(0)
    )
    assert report.shredded == [segment.path]
    assert report.orphans == []


def test_purged_key_leaves_no_trace_in_the_sqlite_files(hub: Hub, db: Session) -> None:
    if hub.db.backend != "sqlite":
        pytest.skip("PostgreSQL keeps dead row versions until VACUUM (see docs/storage.md)")
    dataset = make_dataset(db, "health.cases")
    write(db, hub, dataset, people(10))
    db.commit()
    wrapped = db.scalars(sa.select(DataKey.wrapped)).one()
    assert wrapped is not None
    assert wrapped in _everything_on_disk(hub)
    storage.purge_dataset(db=db, actor=CLI_ADMIN, dataset=dataset)
    db.commit()
    db.close()
    hub.db.flush_erased_pages()
    assert wrapped not in _everything_on_disk(hub)


def test_rotation_rewraps_keys_and_keeps_data_readable(hub: Hub, db: Session) -> None:
    first = make_dataset(db, "health.cases")
    second = make_dataset(db, "health.visits")
    other = make_dataset(db, "police.contacts")
    for dataset in (first, second, other):
        write(db, hub, dataset, people(10))
    segment_bytes = {
        p: Path(hub.storage.full_path(p)).read_bytes()
        for p in db.scalars(sa.select(StorageSegment.path))
    }
    before = {k.dataset_id: k.wrapped for k in db.scalars(sa.select(DataKey))}
    health = agency_service.get_agency(db=db, slug="health")
    rotation = storage.rotate_agency_key(db=db, hub=hub, actor=CLI_ADMIN, agency=health)
    db.commit()
    assert (rotation.version, rotation.retired_version, rotation.rewrapped_data_keys) == (2, 1, 2)
    after = {k.dataset_id: k.wrapped for k in db.scalars(sa.select(DataKey))}
    assert after[first.id] != before[first.id]
    assert after[second.id] != before[second.id]
    assert after[other.id] == before[other.id]
    retired = db.scalars(
        sa.select(AgencyKey).where(AgencyKey.agency_id == health.id, AgencyKey.version == 1)
    ).one()
    assert retired.wrapped is None
    assert retired.retired_at is not None
    for dataset in (first, second, other):
        assert read(db, hub, dataset).to_pylist() == people(10).to_pylist()
    # No data rewritten: the segment files are byte for byte the same.
    assert {p: Path(hub.storage.full_path(p)).read_bytes() for p in segment_bytes} == segment_bytes
    assert "key.rotate" in set(db.scalars(sa.select(AuditEntry.action)))
    write(db, hub, first, people(2), keep_previous=True, operation="append")
    assert read(db, hub, first).num_rows == 12


def test_a_first_write_racing_a_rotation_keeps_its_data_readable(hub: Hub, db: Session) -> None:
    written = make_dataset(db, "health.cases")
    write(db, hub, written, people(10))  # the agency has its key-encryption key, version 1
    make_dataset(db, "health.visits")
    db.commit()

    def rotate(session: Session) -> None:
        health = agency_service.get_agency(db=session, slug="health")
        storage.rotate_agency_key(db=session, hub=hub, actor=CLI_ADMIN, agency=health)

    def first_write() -> None:
        with hub.db.session() as session:
            visits = catalog.get_dataset(db=session, ref="health.visits")
            write(session, hub, visits, people(10))

    # The rotation is open when the dataset's first write wraps its new data key.
    with write_held(hub.db, rotate):
        writer = threading.Thread(target=first_write)
        writer.start()
        time.sleep(1.0)
    writer.join(60)
    with hub.db.session() as session:
        visits = catalog.get_dataset(db=session, ref="health.visits")
        assert read(session, hub, visits).to_pylist() == people(10).to_pylist()


def test_a_read_racing_a_rotation_still_opens_its_data_key(hub: Hub, db: Session) -> None:
    dataset = make_dataset(db, "health.cases")
    write(db, hub, dataset, people(10))
    db.commit()
    rotated: list[int] = []

    def rotate_once(*_args: object) -> None:
        if rotated:
            return
        with hub.db.session() as other:
            health = agency_service.get_agency(db=other, slug="health")
            rotation = storage.rotate_agency_key(db=other, hub=hub, actor=CLI_ADMIN, agency=health)
            rotated.append(rotation.version)

    # The rotation commits right after the read has looked at the data key: on PostgreSQL (read
    # committed) a reader that then looked up the key-encryption key found it retired and
    # answered 410 key_destroyed for a live dataset.
    with hub.db.read_session() as reader:
        connection = reader.connection()

        def after_statement(_conn: object, _cursor: object, statement: str, *rest: object) -> None:
            if "data_key" in statement:
                rotate_once()

        sa.event.listen(connection, "after_cursor_execute", after_statement)
        found = catalog.get_dataset(db=reader, ref="health.cases")
        back = storage.read_version(db=reader, hub=hub, dataset=found).read_all()
    assert rotated == [2]
    assert back.to_pylist() == people(10).to_pylist()


def test_a_write_racing_a_purge_stores_no_version_after_it(hub: Hub, db: Session) -> None:
    dataset = make_dataset(db, "health.cases")
    write(db, hub, dataset, people(10))
    db.commit()
    failures: list[BaseException] = []

    def purge(session: Session) -> None:
        found = catalog.get_dataset(db=session, ref="health.cases")
        storage.purge_dataset(db=session, actor=CLI_ADMIN, dataset=found)

    def second_write() -> None:
        try:
            with hub.db.session() as session:
                found = catalog.get_dataset(db=session, ref="health.cases")
                write(session, hub, found, people(5, start=100))
        except Gone as exc:
            failures.append(exc)

    with write_held(hub.db, purge):  # the purge is open when the write starts
        writer = threading.Thread(target=second_write)
        writer.start()
        time.sleep(1.0)
    writer.join(60)
    with hub.db.session() as session:
        found = catalog.get_dataset(db=session, ref="health.cases")
        assert [v.number for v in storage.list_versions(db=session, dataset=found)] == [1]
    assert [getattr(f, "code", None) for f in failures] == ["dataset_purged"]


class ProtocolOnlyProvider:
    """What ``KeyProvider`` declares and nothing more, forwarded to the file-backed provider:
    a stand-in for a KMS-backed provider written to the protocol."""

    def __init__(self, inner: object) -> None:
        self._inner = inner
        declared = {name for name in dir(crypto.KeyProvider) if not name.startswith("_")}
        self._declared = declared | set(crypto.KeyProvider.__annotations__)

    def __getattr__(self, name: str) -> object:
        if name not in self._declared:
            raise AttributeError(f"KeyProvider declares no '{name}'")
        return getattr(self._inner, name)


def test_a_provider_implementing_the_key_provider_protocol_is_enough(hub: Hub, db: Session) -> None:
    from civicshare.policy.service import objection_key
    from civicshare.web.security import csrf_token

    hub.__dict__["keys"] = ProtocolOnlyProvider(hub.keys)
    dataset = make_dataset(db, "health.cases")
    write(db, hub, dataset, people(10))
    health = agency_service.get_agency(db=db, slug="health")
    storage.rotate_agency_key(db=db, hub=hub, actor=CLI_ADMIN, agency=health)
    assert read(db, hub, dataset).num_rows == 10
    # The hub's keyed hashes, signed URLs and form tokens come from the master key too.
    assert objection_key(hub, "health") != objection_key(hub, "police")
    assert len(csrf_token(hub, "cookie-secret")) == 64
    storage.purge_dataset(db=db, actor=CLI_ADMIN, dataset=dataset)


def test_rotation_is_admin_only(hub: Hub, db: Session) -> None:
    steward = person(db, "health")
    health = agency_service.get_agency(db=db, slug="health")
    with pytest.raises(Forbidden):
        storage.rotate_agency_key(db=db, hub=hub, actor=steward, agency=health)


def test_writers_must_steward_the_dataset_agency(hub: Hub, db: Session) -> None:
    dataset = make_dataset(db, "health.cases")
    for actor in (person(db, "police"), person(db, "health", Role.analyst)):
        with pytest.raises(Forbidden):
            storage.write_version(
                db=db,
                hub=hub,
                actor=actor,
                dataset=dataset,
                batches=[],
                schema=people(1).schema,
                keep_previous=False,
                operation="replace",
            )
    version = storage.write_version(
        db=db,
        hub=hub,
        actor=person(db, "health"),
        dataset=dataset,
        batches=people(3).to_batches(),
        schema=people(1).schema,
        keep_previous=False,
        operation="replace",
    )
    assert version.row_count == 3


def test_bad_writes_are_refused_and_change_nothing(hub: Hub, db: Session) -> None:
    dataset = make_dataset(db, "health.cases")
    good = people(4)
    wrong_type = good.set_column(0, "person_id", pa.array(["a", "b", "c", "d"]))
    missing = good.drop_columns(["zip"])
    cases = [
        ({"operation": "merge"}, good, "bad_operation"),
        ({}, wrong_type, "schema_mismatch"),
        ({}, missing, "schema_mismatch"),
    ]
    for kwargs, table, code in cases:
        with pytest.raises(Invalid) as error:
            storage.write_version(
                db=db,
                hub=hub,
                actor=CLI_ADMIN,
                dataset=dataset,
                batches=table.to_batches(),
                schema=table.schema,
                keep_previous=False,
                **{"operation": "replace", **kwargs},  # type: ignore[arg-type]
            )
        assert error.value.code == code
    assert storage.list_versions(db=db, dataset=dataset) == []
    assert hub.storage.list_files("datasets") == []
    with pytest.raises(NotFound) as missing_version:
        read(db, hub, dataset)
    assert missing_version.value.code == "version_not_found"


def test_empty_replace_is_a_version_with_no_rows(hub: Hub, db: Session) -> None:
    dataset = make_dataset(db, "health.cases")
    write(db, hub, dataset, people(5))
    version = write(db, hub, dataset, people(0))
    assert version.row_count == 0
    assert version.segment_ids == []
    assert read(db, hub, dataset).num_rows == 0
    assert read(db, hub, dataset, version=1).num_rows == 5


def test_an_append_its_new_schema_cannot_read_the_kept_rows_in_is_refused(
    hub: Hub, db: Session
) -> None:
    from civicshare.catalog.tableschema import TableSchema
    from tests.support.datasets import PEOPLE_SCHEMA

    dataset = make_dataset(db, "health.cases")
    write(db, hub, dataset, people(5))  # diagnosis holds text such as "code-4"
    narrowed = {
        **PEOPLE_SCHEMA,
        "fields": [
            {**f, "type": "integer"} if f["name"] == "diagnosis" else f
            for f in PEOPLE_SCHEMA["fields"]
        ],
    }
    catalog.update_schema(
        db=db,
        actor=CLI_ADMIN,
        dataset=dataset,
        table_schema=TableSchema.model_validate(narrowed),
        breaking=True,
    )
    extra = people(2, start=10).set_column(2, "diagnosis", pa.array([1, 2], pa.int64()))
    files = {f.path for f in hub.storage.list_files("datasets")}
    with pytest.raises(Conflict) as error:
        write(db, hub, dataset, extra, keep_previous=True, operation="append")
    assert error.value.code == "breaking_schema_change"
    assert {f.path for f in hub.storage.list_files("datasets")} == files
    # Still one readable latest version; a replace under the new schema is the way on.
    assert [v.number for v in storage.list_versions(db=db, dataset=dataset)] == [1]
    assert read(db, hub, dataset).num_rows == 5
    write(db, hub, dataset, extra, operation="replace")
    assert read(db, hub, dataset).column("diagnosis").to_pylist() == [1, 2]


def test_schema_evolution_keeps_old_segments_readable(hub: Hub, db: Session) -> None:
    from civicshare.catalog.tableschema import TableSchema
    from tests.support.datasets import PEOPLE_SCHEMA

    dataset = make_dataset(db, "health.cases")
    write(db, hub, dataset, people(5))
    wider = {
        **PEOPLE_SCHEMA,
        "fields": [*PEOPLE_SCHEMA["fields"], {"name": "ward", "type": "integer"}],
    }
    catalog.update_schema(
        db=db, actor=CLI_ADMIN, dataset=dataset, table_schema=TableSchema.model_validate(wider)
    )
    extra = people(2, start=10).append_column("ward", pa.array([1, 2], pa.int64()))
    write(db, hub, dataset, extra, keep_previous=True, operation="append")
    back = read(db, hub, dataset)
    assert back.column("ward").to_pylist() == [None] * 5 + [1, 2]
    assert read(db, hub, dataset, version=1).column_names == [
        f["name"] for f in PEOPLE_SCHEMA["fields"]
    ]
