"""Readers over the real files and over hand-made edge cases, checked against the stdlib."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from civicshare.errors import Invalid
from civicshare.ingest import readers
from civicshare.ingest.readers import open_table, sniff_dialect
from tests.conftest import REALDATA

# Row counts as published in SOURCES.md.
REAL_FILES = {
    "nyc311/data/311_Service_Requests.csv": 1000,
    "nyc311/data/fhrw-4uyv.json": 1000,
    "la311/Project/python/src/static/MyLA311_Service_Request_Data_2017_Subset.csv": 9999,
    "nyc-doh-covid/trends/caserate-by-modzcta.csv": 293,
    "nyc-doh-covid/trends/covid-like-illness-by-boro.csv": 10420,
    "nyc-doh-covid/trends/data-by-day.csv": 2054,
    "nyc-doh-covid/totals/data-by-modzcta.csv": 177,
    "nyc-doh-covid/Geography-resources/ZCTA-to-MODZCTA.csv": 215,
    "nyc-airquality-nyccas/hist/csv/2025/10.csv": 10257,
    "nyc-airquality-nyccas/hist/csv/2025/7.csv": 10160,
    "nyc-airquality-nyccas/hist/json/2025/10.json": 10257,
    "nyc-airquality-nyccas/hist/csv/location.csv": 19,
    "nyc-airquality-nyccas/portal/station-new.csv": 16,
    "seattle-bike-counters/raw/58th-st.json": 37968,
    "sf-fire-ems-calls/Fire_Department_Calls_for_Service.csv": 7704,
    "avon-fire-incidents/afrs_attended_incidents_july_2014.csv": 1084,
    "nyc-housing-health/neighborhood-reports/data/viz/Housing_and_Health.json": 5586,
    "nyc-housing-health/neighborhood-reports/data/Housing_and_Health_data.csv": 5460,
    "population-datapackage/data/population.csv": 17195,
}


def read_all(path: Path, **kwargs: object) -> pa.Table:
    source = open_table(path, **kwargs)  # type: ignore[arg-type]
    batches = list(source)
    columns = list(source.columns)
    for batch in batches:
        columns += [c for c in batch.schema.names if c not in columns]
    return (
        pa.Table.from_pylist(
            [row for batch in batches for row in batch.to_pylist()], schema=None
        ).select(columns)
        if batches
        else pa.table({})
    )


def stdlib_rows(path: Path, encoding: str = "utf-8-sig") -> list[dict[str, str]]:
    if path.suffix == ".json":
        records = json.loads(path.read_text(encoding))
        return [{k: v for k, v in r.items() if not isinstance(v, dict)} for r in records]
    with path.open(encoding=encoding, newline="") as handle:
        return list(csv.DictReader(handle))


def test_every_real_file_is_present() -> None:
    for relative in REAL_FILES:
        assert (REALDATA / relative).is_file(), relative


@pytest.mark.parametrize("relative", sorted(REAL_FILES))
def test_real_file_reads_every_row_like_the_stdlib(relative: str) -> None:
    path = REALDATA / relative
    encoding = "cp1252" if "avon" in relative else "utf-8-sig"
    table = read_all(path)
    assert table.num_rows == REAL_FILES[relative]
    expected = stdlib_rows(path, encoding)
    assert len(expected) == table.num_rows
    for name in list(expected[0])[:8]:
        got = table.column(name).to_pylist()
        want = [None if r.get(name) is None else _as_text(r[name]) for r in expected]
        assert got == want, name


def _as_text(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # JSON's 8.0 is the number 8
    return json.dumps(value)


def test_windows_1252_file_is_detected_and_decoded() -> None:
    path = REALDATA / "avon-fire-incidents/afrs_attended_incidents_july_2014.csv"
    source = open_table(path)
    assert source.dialect is not None
    assert source.dialect.encoding == "cp1252"
    causes = {v for b in source for v in b.column("Cause of Fire").to_pylist()}
    assert "Deliberate \u2013 others property" in causes  # 0x96 is an en dash in cp1252


def test_socrata_nested_location_is_flattened_with_dotted_names() -> None:
    table = read_all(REALDATA / "nyc311/data/fhrw-4uyv.json")
    assert "location.type" in table.column_names
    assert "location.coordinates" in table.column_names
    first = json.loads((REALDATA / "nyc311/data/fhrw-4uyv.json").read_text())[0]
    assert table.column("location.coordinates")[0].as_py() == json.dumps(
        first["location"]["coordinates"], separators=(",", ":")
    )
    # Socrata leaves null fields out: absent keys read as nulls, not as empty strings.
    assert table.column("intersection_street_1").null_count > 0


def test_bike_counts_stay_text_with_absent_keys_as_null() -> None:
    table = read_all(REALDATA / "seattle-bike-counters/raw/58th-st.json")
    assert table.column("east")[0].as_py() == "6"
    missing = sum(table.column(c).null_count for c in ("east", "west"))
    assert missing > 0


@pytest.mark.parametrize(
    ("text", "delimiter", "quote"),
    [
        ("a;b;c\n1;2;3\n4;5;6\n", ";", '"'),
        ("a\tb\n1\t2\n", "\t", '"'),
        ("a|b|c\n1|'x|y'|3\n", "|", "'"),
        ('a,b\n"1,5",2\n"3",4\n', ",", '"'),
    ],
)
def test_dialect_sniffing(text: str, delimiter: str, quote: str) -> None:
    assert sniff_dialect(text) == (delimiter, quote)


def test_bom_crlf_semicolons_and_quoted_newlines(tmp_path: Path) -> None:
    path = tmp_path / "odd.csv"
    path.write_bytes(b'\xef\xbb\xbfname;note\r\n"M\xc3\xbcller";"two\r\nlines"\r\nLee;"a;b"\r\n')
    table = read_all(path)
    assert table.column_names == ["name", "note"]
    assert table.column("name").to_pylist() == ["Müller", "Lee"]
    assert table.column("note").to_pylist() == ["two\r\nlines", "a;b"]


def test_a_quoted_line_break_in_the_header_does_not_shift_the_rows(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_bytes(b'"case\nid",note\r\n1,"a\nb"\r\n2,c\r\n')
    table = read_all(path)
    assert table.column_names == ["case\nid", "note"]
    assert table.to_pylist() == [
        {"case\nid": "1", "note": "a\nb"},
        {"case\nid": "2", "note": "c"},
    ]


@pytest.mark.parametrize("content", [b"id,name", b"id,name\n", b"id,name\r\n\r\n"])
def test_a_header_alone_is_an_empty_table(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "h.csv"
    path.write_bytes(content)
    table = open_table(path)
    assert table.columns == ["id", "name"]
    assert list(table) == []


def test_lines_ending_in_cr_alone_are_read(tmp_path: Path) -> None:
    # "CSV (Macintosh)" as old Excel saves it.
    path = tmp_path / "mac.csv"
    path.write_bytes(b'name,note\rAda,"two\rlines"\rLee,x\r')
    table = read_all(path)
    assert table.column_names == ["name", "note"]
    assert table.to_pylist() == [
        {"name": "Ada", "note": "two\rlines"},
        {"name": "Lee", "note": "x"},
    ]


@pytest.mark.parametrize("cell_chars", [200_000, 2_000_000])
def test_a_cell_longer_than_the_csv_modules_limit_is_read(tmp_path: Path, cell_chars: int) -> None:
    # A geometry as text can be this long; the sniffer's csv module refuses fields > 128 KiB.
    path = tmp_path / "shapes.csv"
    shape = "x" * cell_chars
    path.write_text(f"id;shape;area\n1;{shape};1,5\n2;y;2,5\n")
    assert read_all(path).column("shape").to_pylist() == [shape, "y"]


def test_blank_and_repeated_headers_get_names(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_text("id,,id\n1,2,3\n")
    assert open_table(path).columns == ["id", "column_2", "id_2"]


def test_made_up_header_names_never_take_one_the_file_uses(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_text("a,a,a_2,,column_4\n1,2,3,4,5\n")
    table = read_all(path)
    assert table.column_names == ["a", "a_3", "a_2", "column_4_2", "column_4"]
    assert table.to_pylist() == [
        {"a": "1", "a_3": "2", "a_2": "3", "column_4_2": "4", "column_4": "5"}
    ]


def test_ndjson_and_nested_objects(tmp_path: Path) -> None:
    path = tmp_path / "r.ndjson"
    path.write_text('{"a": 1, "b": {"c": "x", "d": [1, 2]}}\n{"a": 2.5, "e": true}\n')
    table = read_all(path)
    assert table.column_names == ["a", "b.c", "b.d", "e"]
    assert table.column("a").to_pylist() == ["1", "2.5"]
    assert table.column("b.d").to_pylist() == ["[1,2]", None]
    assert table.column("e").to_pylist() == [None, "true"]


def test_json_infinities_read_as_table_schema_numbers(tmp_path: Path) -> None:
    path = tmp_path / "levels.ndjson"
    path.write_text('{"v": Infinity}\n{"v": -Infinity}\n{"v": NaN}\n{"v": 1e400}\n{"v": 2.5}\n')
    assert read_all(path).column("v").to_pylist() == ["INF", "-INF", "NaN", "INF", "2.5"]


@pytest.mark.parametrize("content", [b"  \r\n", b"\xef\xbb\xbf", b"\xef\xbb\xbf\n\n"])
def test_a_blank_json_file_is_empty(tmp_path: Path, content: bytes) -> None:
    # A .json file of whitespace or a BOM alone was malformed_json ("the array is not closed"),
    # where a blank .ndjson file was already empty_file.
    path = tmp_path / "blank.json"
    path.write_bytes(content)
    with pytest.raises(Invalid) as caught:
        read_all(path)
    assert caught.value.code == "empty_file"


def test_json_whole_floats_read_as_integers(tmp_path: Path) -> None:
    # JSON has one number type: 3.0 is 3 (an integer field takes it); a string stays as written.
    path = tmp_path / "counts.ndjson"
    path.write_text('{"v": 3.0}\n{"v": -0.0}\n{"v": 1e2}\n{"v": "3.0"}\n{"v": 2.5}\n{"v": 1e300}\n')
    assert read_all(path).column("v").to_pylist() == ["3", "0", "100", "3.0", "2.5", "1e+300"]


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16"])
def test_json_lines_in_a_dot_json_file_are_read(tmp_path: Path, encoding: str) -> None:
    # Spark's df.write.json and BigQuery's exports write one object per line as part-*.json.
    path = tmp_path / "part-00000.json"
    path.write_text('{"id": 1, "a": {"b": "x"}}\n{"id": 2}\n', encoding=encoding)
    table = read_all(path)
    assert table.to_pylist() == [{"id": "1", "a.b": "x"}, {"id": "2", "a.b": None}]


def test_json_array_split_across_read_chunks(tmp_path: Path) -> None:
    records = [{"n": i, "text": "x" * 5000} for i in range(600)]  # > 1 MiB: several chunks
    path = tmp_path / "big.json"
    path.write_text(json.dumps(records))
    table = read_all(path, batch_rows=100)
    assert table.column("n").to_pylist() == [str(i) for i in range(600)]


def test_parquet_columns_read_as_text(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"id": [1, 2], "v": [1.5, None], "s": ["a", "b"]}), path)
    table = read_all(path)
    assert table.column("id").to_pylist() == ["1", "2"]
    assert table.column("v").to_pylist() == ["1.5", None]


def test_parquet_columns_of_one_name_get_names_of_their_own(tmp_path: Path) -> None:
    path = tmp_path / "twice.parquet"
    pq.write_table(pa.table([pa.array([1]), pa.array(["x"]), pa.array([3])], ["a", "a", "b"]), path)
    table = read_all(path)
    assert table.to_pylist() == [{"a": "1", "a_2": "x", "b": "3"}]


def test_parquet_uuids_read_as_text_and_other_bytes_are_named(tmp_path: Path) -> None:
    import uuid

    ids = [uuid.uuid4(), uuid.uuid4()]
    path = tmp_path / "ids.parquet"
    uuids = pa.array([i.bytes for i in ids], pa.uuid())
    pq.write_table(pa.table({"id": uuids, "blob": pa.array([b"ok", None])}), path)
    assert read_all(path).to_pylist() == [
        {"id": str(ids[0]), "blob": "ok"},
        {"id": str(ids[1]), "blob": None},
    ]
    pq.write_table(pa.table({"id": uuids, "photo": pa.array([b"\xff\xd8", None])}), path)
    with pytest.raises(Invalid) as caught:
        read_all(path)
    assert (caught.value.code, "photo" in str(caught.value)) == ("malformed_parquet", True)


def test_xlsx_streams_rows(tmp_path: Path) -> None:
    import datetime as dt

    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(["id", "when", "name"])
    sheet.append([1, dt.date(2024, 2, 29), "Ada"])
    sheet.append([2, None, "Grace"])
    path = tmp_path / "t.xlsx"
    workbook.save(path)
    table = read_all(path)
    assert table.column("id").to_pylist() == ["1", "2"]
    assert table.column("when").to_pylist() == ["2024-02-29", None]


@pytest.mark.parametrize("keep", [0.2, 0.9])
def test_xlsx_with_a_cut_sheet_is_malformed(tmp_path: Path, keep: float) -> None:
    import io
    import zipfile

    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(["id", "name"])
    for number in range(300):
        sheet.append([number, f"name {number}"])
    whole = io.BytesIO()
    workbook.save(whole)
    path = tmp_path / "cut.xlsx"
    with zipfile.ZipFile(whole) as original, zipfile.ZipFile(path, "w") as cut:
        for item in original.infolist():
            data = original.read(item.filename)
            if item.filename == "xl/worksheets/sheet1.xml":
                data = data[: int(len(data) * keep)]
            cut.writestr(item, data)
    with pytest.raises(Invalid) as caught:
        read_all(path)
    assert caught.value.code == "malformed_xlsx"


@pytest.mark.parametrize(
    ("name", "content", "code"),
    [
        ("ragged.csv", b"a,b\n1,2\n3,4,5\n", "malformed_csv"),
        ("broken.json", b'[{"a": 1}, {"a": ', "malformed_json"),
        ("scalar.json", b"[1, 2]", "malformed_json"),
        ("dotted.json", b'[{"a.b": 1, "a": {"b": 2}}]', "malformed_json"),
        ("two.json", b'[{"a": 1}]\n[{"a": 2}]\n', "malformed_json"),
        ("deep.json", b"[" + b'{"a": ' * 5000 + b"1" + b"}" * 5000 + b"]", "malformed_json"),
        ("deep.ndjson", b"[" * 100_000 + b"]" * 100_000, "malformed_json"),
        ("empty.csv", b"", "empty_file"),
        ("bad.parquet", b"PAR1 not really", "malformed_parquet"),
        ("bad.xlsx", b"PK\x03\x04 nope", "malformed_xlsx"),
    ],
)
def test_malformed_files_give_clear_codes(
    tmp_path: Path, name: str, content: bytes, code: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(Invalid) as caught:
        read_all(path)
    assert caught.value.code == code


def test_malformed_csv_message_does_not_quote_the_row(tmp_path: Path) -> None:
    path = tmp_path / "ragged.csv"
    path.write_text("name,ssn\nAda,123-45-6789,extra\n")
    with pytest.raises(Invalid) as caught:
        read_all(path)
    assert "123-45-6789" not in caught.value.message


def test_csv_that_is_not_utf8_past_the_sample_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "late.csv"
    body = b"a,b\n" + b"x,y\n" * 400_000 + "caf\u00e9,z\n".encode("cp1252")
    path.write_bytes(body)
    with pytest.raises(Invalid) as caught:
        read_all(path)
    assert caught.value.code == "malformed_csv"


@pytest.mark.parametrize(
    ("encoding", "tail"),
    [("cp1252", b"A\x81B,4\n"), ("utf-16", b"\x00\xd8")],
)
def test_csv_that_breaks_its_sniffed_encoding_past_the_sample_is_refused(
    tmp_path: Path, encoding: str, tail: bytes
) -> None:
    path = tmp_path / "late.csv"
    text = "name,age\n" + "Jos\u00e9,3\n" * 200_000
    path.write_bytes(text.encode(encoding) + tail)
    assert open_table(path).dialect.encoding == encoding  # type: ignore[union-attr]
    with pytest.raises(Invalid) as caught:
        read_all(path)
    assert caught.value.code == "bad_encoding"


@pytest.mark.parametrize("name", ["late.json", "late.ndjson"])
def test_json_that_breaks_its_sniffed_encoding_past_the_sample_is_refused(
    tmp_path: Path, name: str
) -> None:
    path = tmp_path / name
    records = ['{"name": "Jos\u00e9"}'] * 100_000
    text = "[" + ",".join(records) + "," if name.endswith(".json") else "\n".join(records) + "\n"
    path.write_bytes(text.encode("cp1252") + b'{"name": "A\x81"}' + b"]" * name.endswith(".json"))
    with pytest.raises(Invalid) as caught:
        read_all(path)
    assert caught.value.code == "bad_encoding"


def test_damaged_utf8_is_refused_rather_than_guessed(tmp_path: Path) -> None:
    # One cut sequence among good ones: charset-normalizer guessed hp-roman8 here, and every
    # accented letter was stored as other characters.
    path = tmp_path / "names.csv"
    path.write_bytes("name,age\nZo\u00eb,4\nRen\u00e9e,5\n".encode() + b"Jos\xc3,3\n")
    with pytest.raises(Invalid) as caught:
        open_table(path)
    assert caught.value.code == "bad_encoding"


def test_csv_read_ahead_is_enough_to_never_stall(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The read-ahead bound (a few blocks) never holds Arrow back from the batch it needs."""
    made: list[readers.Backpressure] = []

    class Recorded(readers.Backpressure):
        def __init__(self, ahead: int, patience: float = 10.0) -> None:
            super().__init__(ahead, patience=2.0)
            made.append(self)

    monkeypatch.setattr(readers, "Backpressure", Recorded)
    # Blocks larger than the 1 MB read buffer, as in production (4 MB), but a smaller file.
    monkeypatch.setattr(readers, "CSV_BLOCK_BYTES", 3 << 19)
    path = tmp_path / "blocks.csv"
    lines = [f"{i},name {i},{i * 7 % 1000}" for i in range(600_000)]
    path.write_text("id,name,amount\n" + "\n".join(lines) + "\n")
    assert path.stat().st_size > 8 * readers.CSV_BLOCK_BYTES
    table = open_table(path)
    rows = sum(batch.num_rows for batch in table)
    assert rows == 600_000
    assert len(made) == 1
    assert made[0].gave_up == 0
