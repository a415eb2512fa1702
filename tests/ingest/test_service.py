"""Ingest end to end: real files into encrypted versions, read back and compared independently."""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from civicshare.catalog import service as catalog
from civicshare.catalog.tableschema import SchemaField, TableSchema
from civicshare.errors import Conflict, Forbidden, Invalid
from civicshare.hub import Hub
from civicshare.ingest import service as ingest
from civicshare.ingest.infer import infer_schema_dict
from civicshare.ingest.models import IngestRecord
from civicshare.permissions import CLI_ADMIN
from civicshare.storage import service as storage
from civicshare.storage.segments import SealedSpool
from tests.conftest import REALDATA
from tests.ingest.test_readers import REAL_FILES
from tests.support.datasets import make_dataset, person
from tests.support.procfs import open_files

# ---------------------------------------------------------------------------- independent reading


def independent_rows(path: Path) -> list[dict[str, Any]]:
    """The file as the stdlib reads it: csv (cp1252 for Avon) or json, nested keys dotted."""
    if path.suffix == ".json":
        rows = []
        for record in json.loads(path.read_text("utf-8")):
            flat: dict[str, Any] = {}
            for key, value in record.items():
                if isinstance(value, dict):
                    flat.update({f"{key}.{k}": v for k, v in value.items()})
                else:
                    flat[key] = value
            rows.append(flat)
        return rows
    encoding = "cp1252" if "avon" in str(path) else "utf-8-sig"
    with path.open(encoding=encoding, newline="") as handle:
        return list(csv.DictReader(handle))


def expected_value(field: SchemaField, raw: Any, missing: list[str]) -> Any:
    """What a value should become, computed with Python's own parsers."""
    if raw is None:
        return None
    if isinstance(raw, list):
        return {"lon": float(raw[0]), "lat": float(raw[1])}
    text = raw.strip() if isinstance(raw, str) else json.dumps(raw)
    if text in missing:
        return None
    fmt = None if field.format in ("default", "any") else field.format
    kind = field.type
    if kind == "integer" or kind == "year":
        return int(text)
    if kind == "number":
        return float(text)
    if kind == "boolean":
        return {"true": True, "false": False}[text.lower()]
    if kind == "date":
        return dt.datetime.strptime(text, fmt or "%Y-%m-%d").date()
    if kind == "datetime":
        return dt.datetime.strptime(text, fmt or "%Y-%m-%dT%H:%M:%S")
    if kind == "time":
        return dt.datetime.strptime(text, fmt or "%H:%M:%S").time()
    if field.constraints.enum is not None:
        return next(str(v) for v in field.constraints.enum if str(v).lower() == text.lower())
    return text


def stored_rows(db: Session, hub: Hub, dataset: Any, **kwargs: Any) -> list[dict[str, Any]]:
    return storage.read_version(db=db, hub=hub, dataset=dataset, **kwargs).read_all().to_pylist()


# ---------------------------------------------------------------------------- every real file


@pytest.mark.slow
@pytest.mark.parametrize("relative", sorted(REAL_FILES))
def test_real_file_is_registered_ingested_and_read_back_identically(
    hub: Hub, db: Session, relative: str
) -> None:
    path = REALDATA / relative
    proposal = infer_schema_dict(path)
    dataset = make_dataset(db, "city.sample", proposal)
    report = ingest.ingest_file(
        db=db, hub=hub, actor=CLI_ADMIN, dataset=dataset, source=path, filename=path.name
    )
    assert (report.status, report.version) == ("stored", 1)
    assert report.rows_read == report.rows_accepted == REAL_FILES[relative]
    schema = TableSchema.model_validate(proposal)
    stored = stored_rows(db, hub, dataset)
    expected = independent_rows(path)
    assert len(stored) == len(expected)
    for field in schema.fields:
        source = field.title or field.name
        missing = field.missingValues or schema.missingValues
        want = [expected_value(field, row.get(source), missing) for row in expected]
        assert [row[field.name] for row in stored] == want, field.name


def test_population_data_package_ingests_with_its_own_schema(hub: Hub, db: Session) -> None:
    package = json.loads((REALDATA / "population-datapackage/datapackage.json").read_text())
    resource = package["resources"][0]
    dataset = make_dataset(db, "world.population", resource["schema"])
    path = REALDATA / "population-datapackage" / resource["path"]
    report = ingest.ingest_file(
        db=db, hub=hub, actor=CLI_ADMIN, dataset=dataset, source=path, filename=path.name
    )
    assert report.rows_accepted == 17195
    stored = stored_rows(db, hub, dataset)
    with path.open(newline="") as handle:
        expected = list(csv.DictReader(handle))
    assert [r["Country Code"] for r in stored] == [r["Country Code"] for r in expected]
    assert [r["Year"] for r in stored] == [int(r["Year"]) for r in expected]
    assert [r["Value"] for r in stored] == [float(r["Value"]) for r in expected]


# ---------------------------------------------------------------------------- planted errors

CASES_SCHEMA: dict[str, Any] = {
    "fields": [
        {"name": "case_id", "type": "integer"},
        {
            "name": "full_name",
            "type": "string",
            "classification": "personal",
            "pii": "name",
            "constraints": {"required": True},
        },
        {"name": "onset", "type": "date", "format": "%m/%d/%Y"},
        {
            "name": "status",
            "type": "string",
            "constraints": {"enum": ["confirmed", "probable", "ruled out"]},
        },
    ],
    "primaryKey": ["case_id"],
}
PLANTED_NAME = "Ottoline Wexhammer-Quist"


def planted_csv(tmp_path: Path, good: int = 60) -> Path:
    lines = ["case_id,full_name,onset,status"]
    lines += [f"{i},Resident {i},01/{1 + i % 28:02d}/2024,confirmed" for i in range(1, good + 1)]
    lines += [
        f"{good + 1},{PLANTED_NAME},13/45/2024,confirmed",  # bad date
        f"{good + 2},,02/01/2024,probable",  # missing required name
        f"{good + 3},Resident X,02/01/2024,maybe",  # enum violation
        "1,Resident Dup,02/01/2024,Probable",  # duplicate key
    ]
    path = tmp_path / "cases.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_planted_errors_are_counted_and_good_rows_stored(
    hub: Hub, db: Session, tmp_path: Path
) -> None:
    dataset = make_dataset(db, "health.cases", CASES_SCHEMA)
    steward = person(db, "health")
    report = ingest.ingest_file(
        db=db,
        hub=hub,
        actor=steward,
        dataset=dataset,
        source=planted_csv(tmp_path),
        filename="cases.csv",
        max_error_rate=0.1,
    )
    assert report.status == "stored"
    assert (report.rows_read, report.rows_accepted, report.rows_rejected) == (64, 60, 4)
    nonzero = {rule: n for rule, n in report.errors_by_rule.items() if n}
    assert nonzero == {"format": 1, "required": 1, "enum": 1, "primaryKey": 1}
    assert {(r.row, r.field, r.rule) for r in report.rejections} == {
        (61, "onset", "format"),
        (62, "full_name", "required"),
        (63, "status", "enum"),
        (64, "case_id", "primaryKey"),
    }
    assert [r["case_id"] for r in stored_rows(db, hub, dataset)] == list(range(1, 61))
    detail = ingest.get_ingest(db=db, hub=hub, actor=steward, dataset=dataset, ingest_id=report.id)
    values = {(q.field, q.value) for q in detail.quarantine}
    assert ("onset", "13/45/2024") in values
    assert ("status", "maybe") in values


def test_quarantine_is_masked_for_auditors_and_never_plaintext_at_rest(
    hub: Hub, db: Session, tmp_path: Path, settings: Any
) -> None:
    from civicshare.agency.models import Role

    dataset = make_dataset(db, "health.cases", CASES_SCHEMA)
    path = tmp_path / "one.csv"
    # The name is valid; the row fails on its date, so the name sits in the quarantine.
    path.write_text(
        f"case_id,full_name,onset,status\n1,{PLANTED_NAME},99/99/2024,confirmed\n"
        + "".join(f"{i},R {i},01/01/2024,confirmed\n" for i in range(2, 40))
    )
    report = ingest.ingest_file(
        db=db, hub=hub, actor=CLI_ADMIN, dataset=dataset, source=path, filename="one.csv"
    )
    db.commit()
    auditor = person(db, "health", Role.auditor)
    detail = ingest.get_ingest(db=db, hub=hub, actor=auditor, dataset=dataset, ingest_id=report.id)
    assert [q.value for q in detail.quarantine] == ["99/99/2024"]  # the date field is internal
    needle = PLANTED_NAME.encode()
    record = db.scalar(select(IngestRecord).where(IngestRecord.id == report.id))
    assert record is not None
    assert needle not in json.dumps(record.rejections).encode()
    if settings.resolved_database_url.startswith("sqlite"):
        for file in settings.home.rglob("*"):
            if file.is_file():
                assert needle not in file.read_bytes(), file


def test_quarantined_protected_values_are_masked_for_non_stewards(
    hub: Hub, db: Session, tmp_path: Path
) -> None:
    from civicshare.agency.models import Role

    schema = dict(CASES_SCHEMA)
    schema["fields"] = [
        *CASES_SCHEMA["fields"][:1],
        {**CASES_SCHEMA["fields"][1], "constraints": {"maxLength": 5}},
        *CASES_SCHEMA["fields"][2:],
    ]
    dataset = make_dataset(db, "health.short", schema)
    path = tmp_path / "s.csv"
    path.write_text(f"case_id,full_name,onset,status\n1,{PLANTED_NAME},01/01/2024,confirmed\n")
    report = ingest.ingest_file(
        db=db,
        hub=hub,
        actor=CLI_ADMIN,
        dataset=dataset,
        source=path,
        filename="s.csv",
        max_error_rate=1.0,
    )
    auditor = person(db, "health", Role.auditor)
    masked = ingest.get_ingest(db=db, hub=hub, actor=auditor, dataset=dataset, ingest_id=report.id)
    assert [(q.field, q.value, q.masked) for q in masked.quarantine] == [("full_name", "***", True)]
    steward = person(db, "health")
    clear = ingest.get_ingest(db=db, hub=hub, actor=steward, dataset=dataset, ingest_id=report.id)
    assert clear.quarantine[0].value == PLANTED_NAME


def test_error_rate_over_the_limit_stores_nothing(hub: Hub, db: Session, tmp_path: Path) -> None:
    dataset = make_dataset(db, "health.cases", CASES_SCHEMA)
    report = ingest.ingest_file(
        db=db,
        hub=hub,
        actor=CLI_ADMIN,
        dataset=dataset,
        source=planted_csv(tmp_path, good=20),
        filename="cases.csv",
    )
    assert report.status == "rejected"
    assert report.version is None
    assert report.rows_rejected == 4
    assert storage.list_versions(db=db, dataset=dataset) == []


# ---------------------------------------------------------------------------- modes


def write_cases(tmp_path: Path, name: str, rows: list[str]) -> Path:
    path = tmp_path / name
    path.write_text("case_id,full_name,onset,status\n" + "\n".join(rows) + "\n")
    return path


def run(hub: Hub, db: Session, dataset: Any, path: Path, mode: str, **kw: Any) -> Any:
    return ingest.ingest_file(
        db=db,
        hub=hub,
        actor=CLI_ADMIN,
        dataset=dataset,
        source=path,
        filename=path.name,
        mode=mode,
        max_error_rate=1.0,
        **kw,
    )


def test_append_replace_upsert_delete(hub: Hub, db: Session, tmp_path: Path) -> None:
    dataset = make_dataset(db, "health.cases", CASES_SCHEMA)
    first = [f"{i},R {i},01/01/2024,confirmed" for i in (1, 2, 3)]
    assert run(hub, db, dataset, write_cases(tmp_path, "a.csv", first), "append").version == 1
    again = run(
        hub,
        db,
        dataset,
        write_cases(tmp_path, "b.csv", ["3,R 3,01/01/2024,probable", "4,R 4,01/02/2024,probable"]),
        "append",
    )
    assert again.errors_by_rule["primaryKey"] == 1  # 3 is already stored
    assert [r["case_id"] for r in stored_rows(db, hub, dataset)] == [1, 2, 3, 4]

    upsert = run(
        hub,
        db,
        dataset,
        write_cases(
            tmp_path, "c.csv", ["2,R two,01/05/2024,ruled out", "9,R 9,01/09/2024,probable"]
        ),
        "upsert",
    )
    assert (upsert.version, upsert.details["rows_replaced"]) == (3, 1)
    rows = {r["case_id"]: r for r in stored_rows(db, hub, dataset)}
    assert sorted(rows) == [1, 2, 3, 4, 9]
    assert (rows[2]["full_name"], rows[2]["status"]) == ("R two", "ruled out")

    path = tmp_path / "d.csv"
    path.write_text("case_id\n1\n4\n77\n")
    deleted = run(hub, db, dataset, path, "delete")
    assert (deleted.version, deleted.details["rows_deleted"]) == (4, 2)
    assert sorted(r["case_id"] for r in stored_rows(db, hub, dataset)) == [2, 3, 9]
    # Every version stays readable (time travel).
    assert len(stored_rows(db, hub, dataset, version=1)) == 3

    replaced = run(hub, db, dataset, write_cases(tmp_path, "e.csv", first[:1]), "replace")
    assert replaced.version == 5
    assert [r["case_id"] for r in stored_rows(db, hub, dataset)] == [1]


def test_upsert_over_many_batches_keeps_stored_order_then_the_file_order(
    hub: Hub, db: Session, tmp_path: Path
) -> None:
    # 8 MB of incoming rows: several CSV blocks, so the spill holds and replays several batches.
    dataset = make_dataset(db, "health.cases", CASES_SCHEMA)
    stored = [f"{i},Stored {i},01/01/2024,confirmed" for i in range(60_000)]
    run(hub, db, dataset, write_cases(tmp_path, "a.csv", stored), "append")
    incoming = list(range(59_990, 460_000, 2))  # the last 5 stored keys are replaced
    rows = [f"{i},Incoming {i},02/01/2024,probable" for i in incoming]
    report = run(hub, db, dataset, write_cases(tmp_path, "b.csv", rows), "upsert")
    assert (report.details["rows_replaced"], report.details["rows_kept"]) == (5, 59_995)
    result = stored_rows(db, hub, dataset)
    replaced = set(incoming)
    expected = [(i, f"Stored {i}") for i in range(60_000) if i not in replaced] + [
        (i, f"Incoming {i}") for i in incoming
    ]
    assert [(r["case_id"], r["full_name"]) for r in result] == expected


def test_upsert_spill_is_sealed_on_disk_and_replays_every_batch(tmp_path: Path) -> None:
    schema = pa.schema([("case_id", pa.int64()), ("full_name", pa.string())])
    batches = [
        pa.record_batch(
            [list(range(n, n + 1000)), [f"planted-{n + i}" for i in range(1000)]], schema=schema
        )
        for n in range(0, 5000, 1000)
    ]
    with SealedSpool(str(tmp_path)) as spill:
        keys = ingest._keys_and_spill(iter(batches), ["case_id"], schema, spill)
        assert keys.to_pylist() == [{"case_id": i} for i in range(5000)]
        replayed = pa.Table.from_batches(list(ingest._replayed(spill)))
        assert replayed.equals(pa.Table.from_batches(batches))
        on_disk = [
            fd
            for fd in open_files(os.getpid())
            if os.readlink(fd).startswith(f"{tmp_path}/") and os.readlink(fd).endswith("(deleted)")
        ]
        assert on_disk  # the spill is an unnamed file in the folder it was given
        for fd in on_disk:
            raw = fd.read_bytes()
            assert len(raw) > 5000
            assert b"planted-" not in raw


CONTACTS_SCHEMA: dict[str, Any] = {
    "fields": [
        {"name": "id", "type": "integer"},
        {"name": "email", "type": "string", "constraints": {"unique": True}},
    ],
    "primaryKey": ["id"],
}


def _contacts(hub: Hub, db: Session, tmp_path: Path, name: str) -> Any:
    dataset = make_dataset(db, f"housing.{name}", CONTACTS_SCHEMA)
    path = tmp_path / f"{name}-stored.csv"
    path.write_text("id,email\n1,a@x.org\n2,b@x.org\n3,c@x.org\n")
    assert run(hub, db, dataset, path, "append").rows_accepted == 3
    return dataset


def _upsert(hub: Hub, db: Session, dataset: Any, tmp_path: Path, lines: str, **kw: Any) -> Any:
    """An upsert of contacts (``lines`` under the ``id,email`` header)."""
    return _upsert_text(hub, db, dataset, tmp_path, "id,email\n" + lines, **kw)


def _emails(db: Session, hub: Hub, dataset: Any) -> dict[int, str]:
    return {row["id"]: row["email"] for row in stored_rows(db, hub, dataset)}


def test_upsert_may_take_a_unique_value_from_a_row_it_replaces(
    hub: Hub, db: Session, tmp_path: Path
) -> None:
    dataset = _contacts(hub, db, tmp_path, "swap")
    report = _upsert(hub, db, dataset, tmp_path, "2,c@x.org\n3,z@x.org\n")
    assert (report.rows_accepted, report.rows_rejected) == (2, 0)
    assert _emails(db, hub, dataset) == {1: "a@x.org", 2: "c@x.org", 3: "z@x.org"}


def test_upsert_rejects_a_unique_value_a_kept_stored_row_holds(
    hub: Hub, db: Session, tmp_path: Path
) -> None:
    dataset = _contacts(hub, db, tmp_path, "clash")
    report = _upsert(hub, db, dataset, tmp_path, "4,a@x.org\n5,e@x.org\n")
    assert (report.rows_accepted, report.rows_rejected) == (1, 1)
    assert {rule: n for rule, n in report.errors_by_rule.items() if n} == {"unique": 1}
    (rejection,) = report.rejections
    assert (rejection.row, rejection.field, rejection.rule) == (1, "email", "unique")
    assert "stored row" in rejection.message
    assert _emails(db, hub, dataset) == {1: "a@x.org", 2: "b@x.org", 3: "c@x.org", 5: "e@x.org"}


def test_upsert_rejections_that_keep_a_stored_row_are_followed_to_the_end(
    hub: Hub, db: Session, tmp_path: Path
) -> None:
    # Row 2 (3 → a@x.org) clashes with kept row 1, so stored row 3 is kept after all; then
    # row 1 (2 → c@x.org) clashes with it too, which only a further pass can see.
    dataset = _contacts(hub, db, tmp_path, "cascade")
    report = _upsert(hub, db, dataset, tmp_path, "2,c@x.org\n3,a@x.org\n")
    assert (report.rows_accepted, report.rows_rejected) == (0, 2)
    assert sorted(r.row for r in report.rejections) == [1, 2]
    assert _emails(db, hub, dataset) == {1: "a@x.org", 2: "b@x.org", 3: "c@x.org"}


def test_upsert_by_another_key_keeps_the_primary_key_unique(
    hub: Hub, db: Session, tmp_path: Path
) -> None:
    dataset = _contacts(hub, db, tmp_path, "by_email")
    lines = "9,a@x.org\n2,q@x.org\n"  # a@x.org's row becomes id 9; id 2 is b@x.org's, kept
    report = _upsert(hub, db, dataset, tmp_path, lines, key=["email"])
    assert {rule: n for rule, n in report.errors_by_rule.items() if n} == {"primaryKey": 1}
    assert [r.row for r in report.rejections] == [2]
    assert _emails(db, hub, dataset) == {9: "a@x.org", 2: "b@x.org", 3: "c@x.org"}


def _dataset_with(
    hub: Hub, db: Session, tmp_path: Path, ref: str, schema: dict[str, Any], csv_text: str
) -> Any:
    dataset = make_dataset(db, ref, schema)
    path = tmp_path / f"{ref}.csv"
    path.write_text(csv_text)
    assert run(hub, db, dataset, path, "append").rows_rejected == 0
    return dataset


def _upsert_text(
    hub: Hub, db: Session, dataset: Any, tmp_path: Path, csv_text: str, **kw: Any
) -> Any:
    path = tmp_path / "upsert.csv"
    path.write_text(csv_text)
    return run(hub, db, dataset, path, "upsert", **kw)


def test_append_checks_unique_values_against_stored_rows(
    hub: Hub, db: Session, tmp_path: Path
) -> None:
    dataset = _contacts(hub, db, tmp_path, "append_unique")
    path = tmp_path / "more.csv"
    path.write_text("id,email\n6,a@x.org\n7,g@x.org\n")
    report = run(hub, db, dataset, path, "append")
    assert (report.rows_accepted, report.rows_rejected) == (1, 1)
    assert {r.rule for r in report.rejections} == {"unique"}


def test_upsert_counts_a_row_once_per_rule_when_it_breaks_it_twice(
    hub: Hub, db: Session, tmp_path: Path
) -> None:
    # Row 2 repeats row 1 within the file and a kept stored row: one rejection, one count.
    dataset = _contacts(hub, db, tmp_path, "twice")
    report = _upsert(hub, db, dataset, tmp_path, "4,a@x.org\n5,a@x.org\n")
    assert report.rows_rejected == 2
    assert report.errors_by_rule["unique"] == 2
    assert sorted(r.row for r in report.rejections) == [1, 2]


def test_upsert_matches_keys_stored_under_an_earlier_schema(
    hub: Hub, db: Session, tmp_path: Path
) -> None:
    schema: dict[str, Any] = {
        "fields": [{"name": "id", "type": "integer"}, {"name": "v", "type": "string"}],
        "primaryKey": ["id"],
    }
    dataset = _dataset_with(hub, db, tmp_path, "health.widened", schema, "id,v\n1,one\n2,two\n")
    schema["fields"][0]["type"] = "number"  # integers widen to numbers: not a breaking change
    catalog.update_schema(
        db=db, actor=CLI_ADMIN, dataset=dataset, table_schema=TableSchema.model_validate(schema)
    )
    report = _upsert_text(hub, db, dataset, tmp_path, "id,v\n1,new\n")
    assert report.details["rows_replaced"] == 1
    assert sorted((r["id"], r["v"]) for r in stored_rows(db, hub, dataset)) == [
        (1.0, "new"),
        (2.0, "two"),
    ]


@pytest.mark.parametrize("mode", ["upsert", "delete", "append"])
def test_ingest_over_a_version_stored_before_a_field_was_added_or_removed(
    hub: Hub, db: Session, tmp_path: Path, mode: str
) -> None:
    # Upserts and deletes crashed on the stored version's other columns (a 500 over HTTP); an
    # append could not check a unique field the stored version did not have yet.
    schema: dict[str, Any] = {
        "fields": [
            {"name": "id", "type": "integer"},
            {"name": "v", "type": "string"},
            {"name": "old", "type": "string"},
        ],
        "primaryKey": ["id"],
    }
    stored = "id,v,old\n1,one,x\n2,two,y\n"
    dataset = _dataset_with(hub, db, tmp_path, "health.evolved", schema, stored)
    schema["fields"] = [
        *schema["fields"][:2],
        {"name": "code", "type": "string", "constraints": {"unique": True}},
    ]
    catalog.update_schema(
        db=db,
        actor=CLI_ADMIN,
        dataset=dataset,
        table_schema=TableSchema.model_validate(schema),
        breaking=True,
    )
    path = tmp_path / "change.csv"
    path.write_text("id,v,code\n1,new,c1\n" if mode != "append" else "id,v,code\n3,three,c3\n")
    report = run(hub, db, dataset, path, mode)
    assert (report.status, report.rows_rejected) == ("stored", 0)
    expected = {
        "upsert": [(2, "two", None), (1, "new", "c1")],
        "delete": [(2, "two", None)],
        "append": [(1, "one", None), (2, "two", None), (3, "three", "c3")],
    }[mode]
    assert [(r["id"], r["v"], r["code"]) for r in stored_rows(db, hub, dataset)] == expected


def _retyped(
    hub: Hub, db: Session, tmp_path: Path, ref: str, types: tuple[str, str], stored: str
) -> Any:
    """A dataset keyed by ``id`` of type ``types[0]`` holding ``stored``, then changed (as a
    breaking change) to ``types[1]``."""
    schema: dict[str, Any] = {"fields": [{"name": "id", "type": types[0]}], "primaryKey": ["id"]}
    dataset = _dataset_with(hub, db, tmp_path, ref, schema, stored)
    schema["fields"][0]["type"] = types[1]
    catalog.update_schema(
        db=db,
        actor=CLI_ADMIN,
        dataset=dataset,
        table_schema=TableSchema.model_validate(schema),
        breaking=True,
    )
    return dataset


def test_append_after_a_type_change_checks_keys_in_the_new_type(
    hub: Hub, db: Session, tmp_path: Path
) -> None:
    # Integer keys stored before a change to string: "1" in the file repeats the stored 1.
    types = ("integer", "string")
    dataset = _retyped(hub, db, tmp_path, "health.widened", types, "id\n1\n2\n")
    path = tmp_path / "more.csv"
    path.write_text("id\n1\n3\n")
    report = run(hub, db, dataset, path, "append")
    assert (report.status, report.rows_accepted) == ("stored", 1)
    assert report.errors_by_rule["primaryKey"] == 1
    assert sorted(r["id"] for r in stored_rows(db, hub, dataset)) == ["1", "2", "3"]


def test_append_after_a_change_the_stored_values_cannot_take_is_refused(
    hub: Hub, db: Session, tmp_path: Path
) -> None:
    # Stored "a" and "b" cannot be read as integers: the appended version would be unreadable.
    types = ("string", "integer")
    dataset = _retyped(hub, db, tmp_path, "health.retyped", types, "id\na\nb\n")
    path = tmp_path / "more.csv"
    path.write_text("id\n3\n")
    with pytest.raises(Conflict) as refused:
        run(hub, db, dataset, path, "append")
    assert refused.value.code == "breaking_schema_change"
    assert [v.number for v in storage.list_versions(db=db, dataset=dataset)] == [1]


def test_upsert_by_a_geopoint_key_and_a_nan_key(hub: Hub, db: Session, tmp_path: Path) -> None:
    points: dict[str, Any] = {
        "fields": [{"name": "loc", "type": "geopoint"}, {"name": "v", "type": "string"}],
        "primaryKey": ["loc"],
    }
    stored = 'loc,v\n"1.5, 2.5",old\n"3, 4",other\n'
    dataset = _dataset_with(hub, db, tmp_path, "transport.points", points, stored)
    report = _upsert_text(hub, db, dataset, tmp_path, 'loc,v\n"1.5, 2.5",new\n')
    assert report.details["rows_replaced"] == 1
    assert sorted(r["v"] for r in stored_rows(db, hub, dataset)) == ["new", "other"]
    readings: dict[str, Any] = {
        "fields": [{"name": "x", "type": "number"}, {"name": "v", "type": "string"}],
        "primaryKey": ["x"],
    }
    dataset = _dataset_with(hub, db, tmp_path, "transport.nan", readings, "x,v\nNaN,old\n1,one\n")
    report = _upsert_text(hub, db, dataset, tmp_path, "x,v\nNaN,new\n")
    assert report.details["rows_replaced"] == 1  # as an append finds NaN repeating NaN
    assert sorted(r["v"] for r in stored_rows(db, hub, dataset)) == ["new", "one"]


def test_upsert_ends_when_a_kept_row_holds_minus_zero(
    hub: Hub, db: Session, tmp_path: Path
) -> None:
    schema: dict[str, Any] = {
        "fields": [
            {"name": "id", "type": "integer"},
            {"name": "reading", "type": "number", "constraints": {"unique": True}},
        ],
        "primaryKey": ["id"],
    }
    dataset = _dataset_with(hub, db, tmp_path, "health.zero", schema, "id,reading\n1,-0\n2,5\n")
    report = _upsert_text(hub, db, dataset, tmp_path, "id,reading\n3,0\n4,6\n")
    assert (report.rows_accepted, report.rows_rejected) == (1, 1)  # -0 and 0 are one value
    assert sorted(r["id"] for r in stored_rows(db, hub, dataset)) == [1, 2, 4]


def test_upsert_by_another_key_keeps_a_composite_primary_key_unique(
    hub: Hub, db: Session, tmp_path: Path
) -> None:
    schema: dict[str, Any] = {
        "fields": [
            {"name": "site", "type": "string"},
            {"name": "day", "type": "date"},
            {"name": "ref", "type": "string", "constraints": {"unique": True}},
        ],
        "primaryKey": ["site", "day"],
    }
    stored = "site,day,ref\nA,2024-01-01,r1\nB,2024-01-01,r2\n"
    dataset = _dataset_with(hub, db, tmp_path, "health.sites", schema, stored)
    lines = "site,day,ref\nA,2024-01-01,r9\nB,2024-01-01,r2\n"  # r9 is new: (A, day) is r1's
    report = _upsert_text(hub, db, dataset, tmp_path, lines, key=["ref"])
    assert {rule: n for rule, n in report.errors_by_rule.items() if n} == {"primaryKey": 1}
    (rejection,) = report.rejections
    assert (rejection.row, rejection.field) == (1, "site, day")
    assert sorted(r["ref"] for r in stored_rows(db, hub, dataset)) == ["r1", "r2"]


def test_upsert_by_a_key_the_file_lacks_is_refused_and_stores_nothing(
    hub: Hub, db: Session, tmp_path: Path
) -> None:
    dataset = _contacts(hub, db, tmp_path, "keyless")
    with pytest.raises(Invalid) as refused:
        _upsert_text(hub, db, dataset, tmp_path, "id\n7\n8\n", key=["email"])
    assert refused.value.code == "missing_columns"
    assert refused.value.details == {"columns": ["email"]}
    assert len(storage.list_versions(db=db, dataset=dataset)) == 1
    assert _emails(db, hub, dataset) == {1: "a@x.org", 2: "b@x.org", 3: "c@x.org"}


def test_upsert_with_duplicate_keys_in_the_file_keeps_the_first(
    hub: Hub, db: Session, tmp_path: Path
) -> None:
    dataset = make_dataset(db, "health.cases", CASES_SCHEMA)
    rows = ["5,First,01/01/2024,confirmed", "5,Second,01/01/2024,confirmed"]
    report = run(hub, db, dataset, write_cases(tmp_path, "u.csv", rows), "upsert")
    assert report.errors_by_rule["primaryKey"] == 1
    assert [r["full_name"] for r in stored_rows(db, hub, dataset)] == ["First"]


@pytest.mark.parametrize(
    ("mode", "key", "code"),
    [
        ("merge", None, "bad_mode"),
        ("append", ["case_id"], "bad_key"),
        ("upsert", ["nope"], "bad_key"),
    ],
)
def test_bad_arguments_are_refused_before_anything_is_stored(
    hub: Hub, db: Session, tmp_path: Path, mode: str, key: list[str] | None, code: str
) -> None:
    dataset = make_dataset(db, "health.cases", CASES_SCHEMA)
    with pytest.raises(Invalid) as caught:
        run(hub, db, dataset, planted_csv(tmp_path), mode, key=key)
    assert caught.value.code == code
    assert storage.list_versions(db=db, dataset=dataset) == []


def test_malformed_file_stores_nothing(hub: Hub, db: Session, tmp_path: Path) -> None:
    dataset = make_dataset(db, "health.cases", CASES_SCHEMA)
    path = tmp_path / "bad.csv"
    path.write_text("case_id,full_name,onset,status\n1,a,01/01/2024,confirmed,extra\n")
    with pytest.raises(Invalid) as caught:
        run(hub, db, dataset, path, "append")
    assert caught.value.code == "malformed_csv"
    assert storage.list_versions(db=db, dataset=dataset) == []


def test_only_the_owning_agency_may_ingest(hub: Hub, db: Session, tmp_path: Path) -> None:
    dataset = make_dataset(db, "health.cases", CASES_SCHEMA)
    outsider = person(db, "police")
    with pytest.raises(Forbidden):
        ingest.ingest_file(
            db=db,
            hub=hub,
            actor=outsider,
            dataset=dataset,
            source=planted_csv(tmp_path),
            filename="cases.csv",
        )


def test_purge_shreds_every_quarantine_of_the_dataset(
    hub: Hub, db: Session, tmp_path: Path
) -> None:
    from civicshare import crypto
    from civicshare.errors import Gone
    from civicshare.storage.models import AgencyKey
    from tests.storage.test_service import _database_dump, _everything_on_disk

    dataset = make_dataset(db, "health.cases", CASES_SCHEMA)
    bad_onset = "77/88/1999"  # unreadable as a date: the value sits in the quarantine
    path = tmp_path / "one.csv"
    path.write_text(
        f"case_id,full_name,onset,status\n1,{PLANTED_NAME},{bad_onset},confirmed\n"
        + "".join(f"{i},R {i},01/01/2024,confirmed\n" for i in range(2, 40))
    )
    # The first ingest is refused whole (before the dataset has any version or data key), the
    # second stored: both keep the planted name in their quarantine.
    ids = [
        ingest.ingest_file(
            db=db,
            hub=hub,
            actor=CLI_ADMIN,
            dataset=dataset,
            source=path,
            filename="one.csv",
            max_error_rate=rate,
        ).id
        for rate in (0.0, 0.05)
    ]
    db.commit()
    path.unlink()  # the uploaded file itself is not the hub's to shred
    records = [db.get_one(IngestRecord, ingest_id) for ingest_id in ids]
    assert [r.status for r in records] == ["rejected", "stored"]
    backups = [(r.id, bytes(r.quarantine or b""), bytes(r.quarantine_key or b"")) for r in records]
    assert all(sealed and wrapped for _, sealed, wrapped in backups)
    steward = person(db, "health")
    shown = ingest.get_ingest(db=db, hub=hub, actor=steward, dataset=dataset, ingest_id=ids[0])
    assert bad_onset in {q.value for q in shown.quarantine}

    storage.purge_dataset(db=db, actor=CLI_ADMIN, dataset=dataset)
    db.commit()

    for ingest_id in ids:
        with pytest.raises(Gone):
            ingest.get_ingest(db=db, hub=hub, actor=steward, dataset=dataset, ingest_id=ingest_id)
        record = db.get_one(IngestRecord, ingest_id)
        db.refresh(record)
        assert (record.quarantine, record.quarantine_key) == (None, None)
    # A copy of the sealed quarantine kept from before the purge (a backup) opens with no key
    # the hub still has: not the master key, not any agency key (the data key is gone).
    keks = [
        hub.keys.unwrap(k.wrapped, context=f"agency-kek:{k.agency_id}:{k.version}".encode())
        for k in db.scalars(select(AgencyKey))
        if k.wrapped is not None
    ]
    assert keks
    for ingest_id, _sealed, wrapped in backups:
        context = f"ingest-quarantine:{ingest_id}".encode()
        with pytest.raises(Exception):  # noqa: B017, PT011 (any refusal: wrong key or format)
            hub.keys.unwrap(wrapped, context=context)
        for kek in keks:
            with pytest.raises(Invalid):
                crypto.aead_decrypt(kek, wrapped, context=b"sealed-by-data-key:" + context)
    # Nothing of it is left in the metadata database (or, on SQLite, in its files).
    db.close()
    if hub.db.backend == "sqlite":
        hub.db.flush_erased_pages()
    with hub.db.session() as fresh:
        leftovers = _database_dump(hub, fresh)
    if hub.db.backend == "sqlite":
        leftovers += _everything_on_disk(hub)
    assert bad_onset.encode() not in leftovers
    for _, sealed, wrapped in backups:
        assert sealed not in leftovers
        assert wrapped not in leftovers


def test_parquet_timestamps_and_non_finite_floats_are_stored_as_written(
    hub: Hub, db: Session, tmp_path: Path
) -> None:
    schema = {
        "fields": [
            {"name": "id", "type": "integer"},
            {"name": "seen", "type": "datetime"},
            {"name": "zoned", "type": "datetime"},
            {"name": "level", "type": "number"},
        ]
    }
    dataset = make_dataset(db, "transport.readings", schema)
    when = dt.datetime(2024, 2, 29, 13, 45, 7, 250_000)
    path = tmp_path / "readings.parquet"
    pq.write_table(
        pa.table(
            {
                "id": [1, 2, 3],
                "seen": pa.array([when, when, None], pa.timestamp("us")),
                # Stored as UTC instants; their New York wall time is five hours earlier.
                "zoned": pa.array([when, None, when], pa.timestamp("ms", tz="America/New_York")),
                "level": [float("nan"), float("inf"), -float("inf")],
            }
        ),
        path,
    )
    report = run(hub, db, dataset, path, "append")
    assert (report.rows_accepted, report.rows_rejected) == (3, 0)
    rows = stored_rows(db, hub, dataset)
    assert [r["seen"] for r in rows] == [when, when, None]
    assert [r["zoned"] for r in rows] == [when, None, when]
    assert math.isnan(rows[0]["level"])
    assert [r["level"] for r in rows[1:]] == [math.inf, -math.inf]


def test_xlsx_date_cells_fill_date_fields_and_datetime_cells_datetime_fields(
    hub: Hub, db: Session, tmp_path: Path
) -> None:
    from openpyxl import Workbook

    schema = {
        "fields": [
            {"name": "id", "type": "integer"},
            {"name": "born", "type": "date"},
            {"name": "seen", "type": "datetime"},
        ]
    }
    dataset = make_dataset(db, "health.visits", schema)
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(["id", "born", "seen"])
    sheet.append([1, dt.date(2024, 2, 29), dt.datetime(2024, 3, 1, 0, 0)])
    sheet.append([2, dt.date(1999, 12, 31), dt.datetime(2024, 3, 1, 9, 30)])
    path = tmp_path / "visits.xlsx"
    workbook.save(path)
    report = run(hub, db, dataset, path, "append")
    assert (report.rows_accepted, report.rows_rejected) == (2, 0)
    assert stored_rows(db, hub, dataset) == [
        {"id": 1, "born": dt.date(2024, 2, 29), "seen": dt.datetime(2024, 3, 1)},
        {"id": 2, "born": dt.date(1999, 12, 31), "seen": dt.datetime(2024, 3, 1, 9, 30)},
    ]


def test_xlsx_date_cells_fill_date_fields_whose_format_is_for_text(
    hub: Hub, db: Session, tmp_path: Path
) -> None:
    # A schema proposed from the CSV export (%m/%d/%Y) and the same data as a workbook: its
    # date cells are typed, not text in that format, and were all rejected. Text cells of the
    # sheet are still read in the field's format.
    from openpyxl import Workbook

    schema = {
        "fields": [
            {"name": "id", "type": "integer"},
            {"name": "born", "type": "date", "format": "%m/%d/%Y"},
            {"name": "seen", "type": "datetime", "format": "%m/%d/%Y %H:%M"},
        ]
    }
    dataset = make_dataset(db, "health.visits_us", schema)
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(["id", "born", "seen"])
    sheet.append([1, dt.date(2024, 2, 29), dt.datetime(2024, 3, 1, 9, 30)])
    sheet.append([2, "12/31/1999", "03/01/2024 10:15"])
    sheet.append([3, "31/12/1999", "2024-13-01 10:15"])
    path = tmp_path / "visits.xlsx"
    workbook.save(path)
    report = run(hub, db, dataset, path, "append")
    assert [(r.row, r.field, r.rule) for r in report.rejections] == [
        (3, "born", "format"),
        (3, "seen", "format"),
    ]
    assert stored_rows(db, hub, dataset) == [
        {"id": 1, "born": dt.date(2024, 2, 29), "seen": dt.datetime(2024, 3, 1, 9, 30)},
        {"id": 2, "born": dt.date(1999, 12, 31), "seen": dt.datetime(2024, 3, 1, 10, 15)},
    ]


def test_a_row_without_its_key_never_replaces_or_deletes_stored_rows(
    hub: Hub, db: Session, tmp_path: Path
) -> None:
    schema = {
        "fields": [
            {"name": "id", "type": "integer"},
            {"name": "code", "type": "string"},
            {"name": "v", "type": "number"},
        ],
        "primaryKey": ["id"],
    }
    stored = "id,code,v\n1,x,1\n2,,2\n3,,3\n"
    dataset = _dataset_with(hub, db, tmp_path, "housing.units", schema, stored)
    upsert = _upsert_text(hub, db, dataset, tmp_path, "id,code,v\n4,,40\n", key=["code"])
    assert (upsert.rows_rejected, upsert.errors_by_rule["required"]) == (1, 1)
    path = tmp_path / "gone.csv"
    path.write_text('code\nx\n""\n')
    deleted = run(hub, db, dataset, path, "delete", key=["code"])
    assert (deleted.details["rows_deleted"], deleted.errors_by_rule["required"]) == (1, 1)
    assert [r["id"] for r in stored_rows(db, hub, dataset)] == [2, 3]


def test_a_delete_list_may_carry_the_datasets_other_columns(
    hub: Hub, db: Session, tmp_path: Path
) -> None:
    dataset = make_dataset(db, "health.cases", CASES_SCHEMA)
    rows = [f"{i},R {i},01/0{i}/2024,confirmed" for i in (1, 2, 3)]
    run(hub, db, dataset, write_cases(tmp_path, "a.csv", rows), "append")
    # Rows exported from the dataset itself; their other values are not checked.
    listed = write_cases(tmp_path, "gone.csv", ["2,,not a date,whatever"])
    deleted = run(hub, db, dataset, listed, "delete", key=["case_id"])
    assert (deleted.details["rows_deleted"], deleted.rows_rejected) == (1, 0)
    assert [r["case_id"] for r in stored_rows(db, hub, dataset)] == [1, 3]
    undeclared = tmp_path / "odd.csv"
    undeclared.write_text("case_id,colour\n1,red\n")
    with pytest.raises(Invalid) as caught:
        run(hub, db, dataset, undeclared, "delete", key=["case_id"])
    assert caught.value.code == "unexpected_columns"


@pytest.mark.parametrize("pattern", [r"(?!000)\d{3}", r"(\d)\1\d"])
def test_a_pattern_the_validator_cannot_run_is_a_clear_schema_error(
    hub: Hub, db: Session, tmp_path: Path, pattern: str
) -> None:
    schema = {"fields": [{"name": "code", "type": "string", "constraints": {"pattern": pattern}}]}
    dataset = make_dataset(db, "transport.codes", schema)
    path = tmp_path / "codes.csv"
    path.write_text("code\n123\n000\n")
    with pytest.raises(Invalid) as caught:
        run(hub, db, dataset, path, "append")
    assert caught.value.code == "bad_schema"
    assert storage.list_versions(db=db, dataset=dataset) == []


def test_a_key_listed_twice_in_a_delete_is_not_a_rejection(
    hub: Hub, db: Session, tmp_path: Path
) -> None:
    dataset = make_dataset(db, "health.cases", CASES_SCHEMA)
    rows = [f"{i},R {i},01/0{i}/2024,confirmed" for i in (1, 2, 3)]
    run(hub, db, dataset, write_cases(tmp_path, "a.csv", rows), "append")
    path = tmp_path / "gone.csv"
    path.write_text("case_id\n1\n1\n2\n")
    deleted = ingest.ingest_file(
        db=db,
        hub=hub,
        actor=CLI_ADMIN,
        dataset=dataset,
        source=path,
        filename=path.name,
        mode="delete",
    )  # the default error rate: a third of the rows rejected would refuse the delete
    assert (deleted.status, deleted.rows_rejected) == ("stored", 0)
    assert deleted.details["rows_deleted"] == 2
    assert [r["case_id"] for r in stored_rows(db, hub, dataset)] == [3]


def _append_meanwhile(
    hub: Hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    """Make the race certain: another session commits an append of case 3 just after this
    ingest has chosen the version it reads stored rows from.

    PostgreSQL only: a SQLite writer holds the database's write lock from its first statement,
    so no other ingest can commit in between there.
    """
    assert database_url.startswith("postgresql"), database_url
    real_read = storage.read_version

    def read_while_another_steward_appends(**kwargs: Any) -> pa.RecordBatchReader:
        monkeypatch.setattr(storage, "read_version", real_read)
        reader = real_read(**kwargs)
        with hub.db.session() as other:
            target = catalog.get_dataset(db=other, ref="health.cases")
            path = write_cases(tmp_path, "more.csv", [_case(3)])
            assert run(hub, other, target, path, "append").version == 2
            other.commit()
        return reader

    monkeypatch.setattr(storage, "read_version", read_while_another_steward_appends)


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_an_upsert_never_overwrites_a_version_added_while_it_ran(
    hub: Hub, db: Session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    dataset = _dataset_with(hub, db, tmp_path, "health.cases", CASES_SCHEMA, _cases(1, 2))
    db.commit()
    _append_meanwhile(hub, tmp_path, monkeypatch, database_url)
    with pytest.raises(Conflict) as caught:
        _upsert_text(hub, db, dataset, tmp_path, _cases(2))
    assert caught.value.code == "version_conflict"
    db.rollback()
    assert [r["case_id"] for r in stored_rows(db, hub, dataset)] == [1, 2, 3]


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_an_append_never_repeats_a_key_added_while_it_ran(
    hub: Hub, db: Session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    dataset = _dataset_with(hub, db, tmp_path, "health.cases", CASES_SCHEMA, _cases(1, 2))
    db.commit()
    _append_meanwhile(hub, tmp_path, monkeypatch, database_url)
    path = tmp_path / "mine.csv"
    path.write_text(_cases(3, 4))
    with pytest.raises(Conflict) as caught:
        run(hub, db, dataset, path, "append")
    assert caught.value.code == "version_conflict"
    db.rollback()
    assert [r["case_id"] for r in stored_rows(db, hub, dataset)] == [1, 2, 3]


def _case(number: int) -> str:
    return f"{number},R {number},01/0{number}/2024,confirmed"


def _cases(*numbers: int) -> str:
    return "case_id,full_name,onset,status\n" + "".join(f"{_case(n)}\n" for n in numbers)


def test_typed_parquet_dates_fill_fields_whose_format_is_for_text(
    hub: Hub, db: Session, tmp_path: Path
) -> None:
    schema = {
        "fields": [
            {"name": "id", "type": "integer"},
            {"name": "onset", "type": "date", "format": "%m/%d/%Y"},
            {"name": "seen", "type": "datetime", "format": "%m/%d/%Y %I:%M:%S %p"},
            {"name": "note", "type": "date", "format": "%m/%d/%Y"},
            {"name": "born", "type": "date"},
        ]
    }
    dataset = make_dataset(db, "health.onsets", schema)
    seen = dt.datetime(2024, 2, 29, 13, 45, 7)
    path = tmp_path / "onsets.parquet"
    pq.write_table(
        pa.table(
            {
                "id": [1, 2],
                "onset": pa.array([dt.date(2024, 2, 29), None], pa.date32()),
                "seen": pa.array([seen, None], pa.timestamp("s")),
                # Text stays text: its values are in the field's format or rejected.
                "note": ["02/29/2024", "2024-02-29"],
                # pandas writes a column of dates as timestamps; only midnight is a date.
                "born": pa.array([dt.datetime(1990, 5, 1), seen], pa.timestamp("ns")),
            }
        ),
        path,
    )
    report = run(hub, db, dataset, path, "append")
    assert (report.rows_accepted, report.errors_by_rule["format"]) == (1, 1)
    assert report.errors_by_rule["type"] == 1  # the timestamp that is not at midnight
    assert stored_rows(db, hub, dataset) == [
        {
            "id": 1,
            "onset": dt.date(2024, 2, 29),
            "seen": seen,
            "note": dt.date(2024, 2, 29),
            "born": dt.date(1990, 5, 1),
        }
    ]


def test_json_whole_number_fills_an_integer_field_but_json_text_does_not(
    hub: Hub, db: Session, tmp_path: Path
) -> None:
    # Table Schema reads a native JSON number; JSON has one number type, so 3.0 is 3. Text
    # "3.0" is an integer's string form only without the fraction.
    dataset = make_dataset(db, "health.counts", {"fields": [{"name": "n", "type": "integer"}]})
    path = tmp_path / "counts.json"
    path.write_text('[{"n": 3.0}, {"n": 4}, {"n": "3.0"}, {"n": 2.5}]')
    report = run(hub, db, dataset, path, "append")
    assert [(r.row, r.rule) for r in report.rejections] == [(3, "type"), (4, "type")]
    assert [r["n"] for r in stored_rows(db, hub, dataset)] == [3, 4]


def test_quarantined_values_of_a_field_dropped_since_stay_masked(
    hub: Hub, db: Session, tmp_path: Path
) -> None:
    from civicshare.agency.models import Role
    from civicshare.catalog import service as catalog
    from civicshare.catalog.tableschema import TableSchema

    schema = dict(CASES_SCHEMA)
    schema["fields"] = [
        *CASES_SCHEMA["fields"][:1],
        {**CASES_SCHEMA["fields"][1], "constraints": {"maxLength": 5}},
        *CASES_SCHEMA["fields"][2:],
    ]
    dataset = make_dataset(db, "health.dropped", schema)
    path = tmp_path / "s.csv"
    path.write_text(f"case_id,full_name,onset,status\n1,{PLANTED_NAME},01/01/2024,confirmed\n")
    report = run(hub, db, dataset, path, "append")
    # The agency stops collecting names: the personal field leaves the schema.
    without_names = {**schema, "fields": [f for f in schema["fields"] if f["name"] != "full_name"]}
    catalog.update_schema(
        db=db,
        actor=CLI_ADMIN,
        dataset=dataset,
        table_schema=TableSchema.model_validate(without_names),
        breaking=True,
    )
    auditor = person(db, "health", Role.auditor)
    masked = ingest.get_ingest(db=db, hub=hub, actor=auditor, dataset=dataset, ingest_id=report.id)
    assert [(q.field, q.value, q.masked) for q in masked.quarantine] == [("full_name", "***", True)]


@pytest.mark.parametrize("mode", ["upsert", "delete"])
def test_a_key_column_named_twice_is_one_key_column(
    hub: Hub, db: Session, tmp_path: Path, mode: str
) -> None:
    # It escaped as an Arrow error ("Multiple matches for FieldRef"), a 500 over HTTP.
    dataset = make_dataset(db, "health.twice", CASES_SCHEMA)
    run(hub, db, dataset, write_cases(tmp_path, "a.csv", ["1,A,,", "2,B,,"]), "append")
    path = write_cases(tmp_path, "b.csv", ["1,Z,,"])
    report = run(hub, db, dataset, path, mode, key=["case_id", "case_id"])
    assert report.key == ["case_id"]
    expected = [(2, "B"), (1, "Z")] if mode == "upsert" else [(2, "B")]
    assert [(r["case_id"], r["full_name"]) for r in stored_rows(db, hub, dataset)] == expected


def test_array_and_object_fields_take_only_json_arrays_and_objects(
    hub: Hub, db: Session, tmp_path: Path
) -> None:
    # Table Schema: an array field holds a valid JSON array, an object field a JSON object. Any
    # text was stored as one.
    schema = {"fields": [{"name": "tags", "type": "array"}, {"name": "meta", "type": "object"}]}
    dataset = make_dataset(db, "health.shapes", schema)
    path = tmp_path / "shapes.csv"
    path.write_text(
        'tags,meta\n"[1, ""a""]","{""k"": 1}"\nhello,"[1]"\n"{""k"": 1}",{not json\n[],{}\n'
    )
    report = run(hub, db, dataset, path, "append")
    assert [(r.row, r.field, r.rule) for r in report.rejections] == [
        (2, "tags", "type"),
        (3, "tags", "type"),
        (2, "meta", "type"),
        (3, "meta", "type"),
    ]
    rows = stored_rows(db, hub, dataset)
    assert [(r["tags"], r["meta"]) for r in rows] == [('[1, "a"]', '{"k": 1}'), ("[]", "{}")]
