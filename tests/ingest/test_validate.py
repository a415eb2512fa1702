"""Validation against a Table Schema: exact counts per rule, standardised values, no loops."""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from civicshare.catalog.tableschema import TableSchema
from civicshare.errors import Invalid
from civicshare.ingest.readers import open_table
from civicshare.ingest.validate import KeyLedger, Validator

SCHEMA = TableSchema.model_validate(
    {
        "fields": [
            {"name": "case_id", "type": "integer"},
            {
                "name": "reported",
                "type": "date",
                "format": "%m/%d/%Y",
                "constraints": {"required": True},
            },
            {
                "name": "borough",
                "type": "string",
                "constraints": {
                    "enum": ["Bronx", "Brooklyn", "Manhattan", "Queens", "Staten Island"]
                },
            },
            {"name": "age", "type": "integer", "constraints": {"minimum": 0, "maximum": 120}},
            {"name": "zip", "type": "string", "constraints": {"pattern": "[0-9]{5}"}},
            {
                "name": "email",
                "type": "string",
                "format": "email",
                "classification": "personal",
                "pii": "email",
                "constraints": {"unique": True},
            },
            {"name": "note", "type": "string", "constraints": {"maxLength": 10, "minLength": 2}},
        ],
        "primaryKey": ["case_id"],
    }
)


def run(schema: TableSchema, path: Path, *, batch_rows: int = 65_536) -> dict[str, Any]:
    """Validate a file as the service does: one pass, and a second one if keys repeat."""
    repeats: dict[str, pa.Array] = {}
    while True:
        source = open_table(path, batch_rows=batch_rows)
        validator = Validator(schema, source.columns)
        validator.known_repeats = repeats
        accepted: list[pa.RecordBatch] = []
        rejections = []
        errors: dict[str, int] = {}
        rejected = 0
        first = 1
        try:
            for batch in source:
                outcome = validator.validate(batch, first)
                first += batch.num_rows
                accepted.append(outcome.accepted)
                rejections += outcome.rejections
                rejected += outcome.rejected_rows
                for rule, count in outcome.errors_by_rule.items():
                    errors[rule] = errors.get(rule, 0) + count
            found = validator.repeats()
        finally:
            validator.close()
        if found and not repeats:
            repeats = found
            continue
        table = pa.Table.from_batches(accepted, schema=validator.target.remove_metadata())
        return {"table": table, "rejections": rejections, "errors": errors, "rejected": rejected}


PLANTED = """case_id,reported,borough,age,zip,email,note
1,01/02/2024,Bronx,34,10451,a@example.org,ok
2,02/30/2024,Bronx,34,10451,b@example.org,bad date
3,,Queens,50,11101,c@example.org,no date
4,03/01/2024,Narnia,20,10001,d@example.org,enum
5,03/01/2024,  brooklyn ,20,11201,e@example.org,folded
1,03/02/2024,Bronx,20,10451,f@example.org,dup key
6,03/03/2024,Manhattan,130,10001,g@example.org,too old
7,03/03/2024,Manhattan,-1,1000,h@example.org,two
8,03/03/2024,Queens,40,11101,a@example.org,dup mail
9,03/03/2024,Queens,4o,11101,i@example.org,x
10,03/04/2024,Queens,41,11101,not-an-email,this is too long
,03/04/2024,Queens,41,11101,j@example.org,no key
11,2024-03-05,Staten Island,,10301,,fine
"""


@pytest.mark.parametrize("batch_rows", [65_536, 3])
def test_planted_errors_are_counted_exactly(tmp_path: Path, batch_rows: int) -> None:
    path = tmp_path / "planted.csv"
    path.write_text(PLANTED)
    result = run(SCHEMA, path, batch_rows=batch_rows)
    assert result["errors"] == {
        "format": 3,  # 02/30/2024 and 2024-03-05 (wrong format), email "not-an-email"
        "required": 2,  # row 3 date, row 12 key
        "enum": 1,
        "primaryKey": 1,
        "maximum": 1,
        "minimum": 1,
        "pattern": 1,
        "unique": 1,
        "type": 1,  # age "4o"
        "maxLength": 1,
        "minLength": 1,  # "x"
    }
    by_row = {(r.row, r.field, r.rule) for r in result["rejections"]}
    assert (2, "reported", "format") in by_row
    assert (6, "case_id", "primaryKey") in by_row
    assert (9, "email", "unique") in by_row
    assert (8, "age", "minimum") in by_row
    assert (8, "zip", "pattern") in by_row
    assert result["rejected"] == 11
    table = result["table"]
    assert table.column("case_id").to_pylist() == [1, 5]
    assert table.column("borough").to_pylist() == ["Bronx", "Brooklyn"]  # trimmed, folded
    assert table.column("reported").to_pylist() == [dt.date(2024, 1, 2), dt.date(2024, 3, 1)]


def test_rejections_keep_row_value_and_reason(tmp_path: Path) -> None:
    path = tmp_path / "planted.csv"
    path.write_text(PLANTED)
    rejection = next(r for r in run(SCHEMA, path)["rejections"] if r.rule == "enum")
    assert (rejection.row, rejection.field, rejection.value) == (4, "borough", "Narnia")
    assert "Narnia" not in rejection.message  # messages never carry values


def test_an_enum_value_written_exactly_keeps_its_spelling(tmp_path: Path) -> None:
    schema = TableSchema.model_validate(
        {"fields": [{"name": "size", "type": "string", "constraints": {"enum": ["S", "s", "M"]}}]}
    )
    path = tmp_path / "sizes.csv"
    path.write_text("size\ns\nS\nm\nxl\n")
    result = run(schema, path)
    assert result["table"].column("size").to_pylist() == ["s", "S", "M"]
    assert result["errors"] == {"enum": 1}


def test_numbers_are_read_as_the_schema_says_they_are_written(tmp_path: Path) -> None:
    schema = TableSchema.model_validate(
        {
            "fields": [
                {
                    "name": "amount",
                    "type": "number",
                    "decimalChar": ",",
                    "groupChar": ".",
                    "constraints": {"minimum": 1.5, "enum": [1.5, 1234.5, 2]},
                },
                {"name": "people", "type": "integer", "groupChar": " ", "bareNumber": False},
                {"name": "share", "type": "number", "bareNumber": False},
            ]
        }
    )
    path = tmp_path / "eu.csv"
    path.write_text(
        "amount;people;share\n"
        '"1.234,5";"12 000 people";95 %\n'
        '"1,5";~3;€ .5\n'
        '"2";"1 000";NaN\n'
        '"1,4";7;x\n'
    )
    result = run(schema, path)
    assert result["table"].to_pylist() == [
        {"amount": 1234.5, "people": 12000, "share": 95.0},
        {"amount": 1.5, "people": 3, "share": 0.5},
        {"amount": 2.0, "people": 1000, "share": pytest.approx(float("nan"), nan_ok=True)},
    ]
    assert result["errors"] == {"minimum": 1, "enum": 1, "type": 1}


def test_columns_are_matched_by_title_and_sql_name(tmp_path: Path) -> None:
    schema = TableSchema.model_validate(
        {
            "fields": [
                {"name": "neighborhood_district", "title": "Neighborhood  District"},
                {"name": "count", "type": "integer"},
            ]
        }
    )
    path = tmp_path / "t.csv"
    path.write_text('Neighborhood  District,Count\nMission," 12 "\n')
    table = run(schema, path)["table"]
    assert table.to_pylist() == [{"neighborhood_district": "Mission", "count": 12}]


def test_unknown_and_missing_required_columns_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("case_id,reported,surprise\n1,01/01/2024,x\n")
    with pytest.raises(Invalid) as caught:
        Validator(SCHEMA, open_table(path).columns)
    assert caught.value.code == "unexpected_columns"
    path.write_text("case_id,borough\n1,Bronx\n")
    with pytest.raises(Invalid) as caught:
        Validator(SCHEMA, open_table(path).columns)
    assert caught.value.code == "missing_columns"
    assert caught.value.details == {"columns": ["reported"]}


def test_geopoints_booleans_and_datetimes_are_standardised(tmp_path: Path) -> None:
    schema = TableSchema.model_validate(
        {
            "fields": [
                {"name": "at", "type": "geopoint", "format": "array"},
                {"name": "flag", "type": "boolean"},
                {"name": "when", "type": "datetime", "format": "%m/%d/%Y %I:%M:%S %p"},
                {"name": "year", "type": "year"},
                {"name": "rate", "type": "number"},
            ],
            "missingValues": ["", "NA"],
        }
    )
    path = tmp_path / "t.csv"
    path.write_text(
        'at,flag,when,year,rate\n"[-73.9,40.7]",true,12/31/2017 11:59:58 PM,1999,NA\n'
        '"[200,1]",maybe,12/31/2017 13:00:00 PM,99999,1e3\n'
    )
    result = run(schema, path)
    assert result["table"].to_pylist() == [
        {
            "at": {"lon": -73.9, "lat": 40.7},
            "flag": True,
            "when": dt.datetime(2017, 12, 31, 23, 59, 58),
            "year": 1999,
            "rate": None,
        }
    ]
    assert result["errors"] == {"format": 2, "type": 2}


def test_population_package_validates_with_its_own_schema() -> None:
    import json

    from tests.conftest import REALDATA

    package = json.loads((REALDATA / "population-datapackage/datapackage.json").read_text())
    schema = TableSchema.model_validate(package["resources"][0]["schema"])
    result = run(schema, REALDATA / "population-datapackage/data/population.csv")
    assert result["rejected"] == 0
    table = result["table"]
    assert table.num_rows == 17195
    assert table.schema.field("Year").type == pa.int32()
    assert table.schema.field("Value").type == pa.float64()
    assert table.column("Country Code")[0].as_py() == "ABW"


AGES = TableSchema.model_validate(
    {
        "fields": [
            {"name": "id", "type": "integer"},
            {"name": "age", "type": "integer", "constraints": {"minimum": 0, "maximum": 120}},
        ],
        "primaryKey": ["id"],
    }
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 30),
            st.one_of(st.integers(-5, 130).map(str), st.sampled_from(["", "x", "1.5", " 7 "])),
        ),
        max_size=60,
    ),
    st.sampled_from([1, 7, 1000]),
)
def test_accepted_rows_are_exactly_those_python_accepts(
    tmp_path: Path, rows: list[tuple[int, str]], batch_rows: int
) -> None:
    path = tmp_path / f"ages-{len(rows)}-{batch_rows}.csv"
    path.write_text("id,age\n" + "".join(f"{i},{a}\n" for i, a in rows))
    result = run(AGES, path, batch_rows=batch_rows)
    seen: set[int] = set()
    expected = []
    for key, text in rows:
        first = key not in seen
        seen.add(key)
        value = text.strip()
        ok = value == "" or (value.lstrip("-").isdigit() and 0 <= int(value) <= 120)
        if first and ok:
            expected.append({"id": key, "age": int(value) if value else None})
    assert result["table"].to_pylist() == expected
    assert result["rejected"] == len(rows) - len(expected)


@pytest.mark.parametrize("buffer_entries", [3, 1 << 20])
def test_key_ledger_finds_repeats_with_and_without_spilling(buffer_entries: int) -> None:
    """Spilled or not, hashed (text) or exact (integer), the repeats are the same rows."""
    ledger = KeyLedger(buffer_entries=buffer_entries)
    try:
        ledger.record("unique:mail", pa.table({"mail": ["a@x.org", "b@x.org"]}), pa.array([0, 0]))
        ledger.record("primaryKey", pa.table({"id": [7]}), pa.array([0]))
        mails = ["c@x.org", "a@x.org", "c@x.org", "d@x.org", "d@x.org", "e@x.org", "c@x.org"]
        ids = [1, 2, 7, 3, 2, 4, 5]
        for first in range(1, len(ids) + 1, 2):  # batches of two rows
            rows = pa.array(range(first, min(first + 2, len(ids) + 1)), pa.int64())
            picked = slice(first - 1, first + 1)
            ledger.record("unique:mail", pa.table({"mail": mails[picked]}), rows)
            ledger.record("primaryKey", pa.table({"id": ids[picked]}), rows)
        found = {rule: rows.to_pylist() for rule, rows in ledger.repeats().items()}
    finally:
        ledger.close()
    assert found == {"unique:mail": [2, 3, 5, 7], "primaryKey": [3, 5]}


@pytest.mark.parametrize("buffer_entries", [700, 1 << 20])
def test_key_ledger_reports_the_later_row_of_every_repeat(buffer_entries: int) -> None:
    """Repeats within a batch and across batches, spread over every partition: the first row of
    each key is never reported, every later one is (the ledger orders a batch by partition)."""
    keys = [(n * 7919) % 1500 for n in range(4000)]  # each key two or three times, far apart
    ledger = KeyLedger(buffer_entries=buffer_entries)
    try:
        for start in range(0, len(keys), 300):
            chunk = keys[start : start + 300]
            rows = pa.array(range(start + 1, start + 1 + len(chunk)), pa.int64())
            ledger.record("primaryKey", pa.table({"id": chunk}), rows)
            ledger.record("unique:code", pa.table({"code": [f"k{k}" for k in chunk]}), rows)
        found = {rule: rows.to_pylist() for rule, rows in ledger.repeats().items()}
    finally:
        ledger.close()
    seen: set[int] = set()
    later = []
    for row, key in enumerate(keys, start=1):
        if key in seen:
            later.append(row)
        seen.add(key)
    assert found == {"primaryKey": later, "unique:code": later}


def test_key_ledger_spills_only_ciphertext(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    planted = [f"planted-{n:05d}@example.org" for n in range(2000)]
    ledger = KeyLedger(buffer_entries=500)
    try:
        for start in range(0, len(planted), 250):
            chunk = planted[start : start + 250]
            rows = pa.array(range(start + 1, start + 1 + len(chunk)), pa.int64())
            ledger.record("unique:mail", pa.table({"mail": chunk}), rows)
            ledger.record("primaryKey", pa.table({"n": list(range(start, start + 250))}), rows)
        spilled = [p for p in tmp_path.rglob("*") if p.is_file()]
        assert spilled  # the buffer overflowed, so there is something to inspect
        content = b"".join(p.read_bytes() for p in spilled)
        assert b"planted-" not in content
        assert b"example.org" not in content
        # The integer keys are kept exactly (not hashed): their little-endian bytes must not
        # appear either, which they would in unencrypted Arrow buffers.
        assert (1234).to_bytes(8, "little") + (1235).to_bytes(8, "little") not in content
        assert ledger.repeats() == {}
    finally:
        ledger.close()
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]
