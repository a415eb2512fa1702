"""The pure engine over Arrow tables: treatments x formats, star expansion, filters, limits."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from typing import Any

import pyarrow.ipc as pa_ipc
import pyarrow.parquet as pq
import pytest

from civicshare.errors import BadRequest, Forbidden
from civicshare.policy.treatments import REDACTED, hmac_hex, pseudonym_of
from civicshare.policy.view import Exclusion
from civicshare.query.formats import FORMATS, json_body, render_binary
from civicshare.query.sandbox import QueryTimeout
from tests.query.enginekit import PEOPLE, plan, run, view

KEY = b"k" * 32


def _show_last(value: Any, n: int) -> str | None:
    if value is None:
        return None
    text = str(value)
    return "*" * max(len(text) - n, 0) + text[-n:]


def _bins(age: int | None) -> str | None:
    if age is None:
        return None
    return "<18" if age < 18 else "[18,65)" if age < 65 else ">=65"


def _prefix(value: str | None) -> str | None:
    return None if value is None else value[:3] + "*" * (len(value) - 3)


Reference = Callable[[Any], Any]
CASES: list[tuple[str, str, Reference]] = [
    ("name", "clear", lambda v: v),
    ("name", "redact", lambda v: None if v is None else REDACTED),
    ("ssn", "show_last(4)", lambda v: _show_last(v, 4)),
    ("person_id", "pseudonym", lambda v: None if v is None else pseudonym_of(v, KEY)),
    ("ssn", "null", lambda v: None),
    ("dob", "year_only", lambda v: None if v is None else v.year),
    ("age", "generalise(width=10)", lambda v: None if v is None else v // 10 * 10),
    ("age", "generalise(bins=18,65)", _bins),
    ("zip", "generalise(prefix=3)", _prefix),
]


def _decode(output: Any, fmt: str) -> list[Any]:
    """The treated column's values as a client of each format reads them."""
    if fmt == "json":
        body = json.loads(json.dumps(json_body(output.table, truncated=False, suppressed=[])))
        return [row[1] for row in body["rows"]]
    data = render_binary(output.table, fmt)
    if fmt == "csv":
        rows = list(csv.reader(io.StringIO(data.decode())))[1:]
        return [row[1] for row in rows]
    table = (
        pa_ipc.open_stream(data).read_all() if fmt == "arrow" else pq.read_table(io.BytesIO(data))
    )
    return table.column(1).to_pylist()


def _expected(values: list[Any], fmt: str) -> list[Any]:
    if fmt == "csv":
        return ["" if v is None else str(v) for v in values]
    if fmt == "json":
        return [v.isoformat() if hasattr(v, "isoformat") else v for v in values]
    return values


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize(
    ("column", "spec", "reference"), CASES, ids=[f"{c}-{s}" for c, s, _ in CASES]
)
def test_every_treatment_in_every_format_matches_the_reference(
    column: str, spec: str, reference: Reference, fmt: str
) -> None:
    views = {"health.people": view("health.people", PEOPLE, {"n": "clear", column: spec})}
    output = run(f"SELECT n, {column} FROM health.people ORDER BY n", views)
    expected = [reference(value) for value in PEOPLE.column(column).to_pylist()]
    assert _decode(output, fmt) == _expected(expected, fmt)


def test_pseudonyms_differ_between_agreements_so_they_cannot_be_joined() -> None:
    one = view("housing.people", PEOPLE, {"person_id": "pseudonym"}, pseudonym_key=b"1" * 32)
    two = view("health.people", PEOPLE, {"person_id": "pseudonym"}, pseudonym_key=b"2" * 32)
    joined = run(
        "SELECT count(*) FROM housing.people a JOIN health.people b USING (person_id)",
        {"housing.people": one, "health.people": two},
    )
    assert joined.table.column(0).to_pylist() == [0]
    same = run("SELECT person_id FROM housing.people", {"housing.people": one})
    assert same.table.column(0).to_pylist()[0] == pseudonym_of("R-1001", b"1" * 32)


def test_star_expands_over_granted_columns_only() -> None:
    views = {"health.people": view("health.people", PEOPLE, {"n": "clear", "zip": "clear"})}
    for sql in [
        "SELECT * FROM health.people",
        "FROM health.people",
        "SELECT p.* FROM health.people p",
        "SELECT COLUMNS('.*') FROM health.people",
        "SELECT * FROM (SELECT * FROM health.people) s",
        "WITH t AS (SELECT * FROM health.people) SELECT * FROM t",
    ]:
        assert run(sql, views).table.column_names == ["n", "zip"], sql
    as_json = run("SELECT to_json(p) AS j FROM health.people p", views).table
    assert set(json.loads(as_json.column(0)[0].as_py())) == {"n", "zip"}


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT name FROM health.people",
        "SELECT p.name FROM health.people p",
        "SELECT * EXCLUDE (name) FROM health.people",
        "SELECT n FROM health.people WHERE ssn IS NOT NULL",
        "SELECT (SELECT max(name) FROM health.people) AS x",
        "SELECT a.n FROM health.people a JOIN health.people b ON a.name = b.name",
        "SELECT * FROM health.people a, LATERAL (SELECT a.ssn) t",
        "SELECT n FROM health.people ORDER BY dob",
        "SELECT upper(NAME) FROM health.people",
    ],
)
def test_a_non_granted_column_is_a_403_naming_it_and_the_agreement(sql: str) -> None:
    views = {"health.people": view("health.people", PEOPLE, {"n": "clear", "zip": "clear"})}
    with pytest.raises(Forbidden) as caught:
        plan(sql, views)
    assert caught.value.code == "column_not_granted"
    assert caught.value.details["agreement"] == "agr_test"
    assert caught.value.details["column"] in {"name", "ssn", "dob"}
    assert "agr_test" in caught.value.message


def test_row_filter_and_objections_leave_rows_out() -> None:
    objector = Exclusion("person_id", b"o" * 32, frozenset({hmac_hex("R-1002", b"o" * 32)}))
    views = {
        "health.people": view(
            "health.people",
            PEOPLE,
            {"n": "clear", "zip": "clear"},
            row_filter="zip IN ('94110', '94112')",
            exclusions=(objector,),
        )
    }
    output = run("SELECT n FROM health.people ORDER BY n", views)
    # Row 2 (zip 94112) objected; rows 4 and 5 are outside the filter.
    assert output.table.column(0).to_pylist() == [1, 3]


def test_the_row_cap_truncates_and_says_so() -> None:
    views = {"health.people": view("health.people", PEOPLE)}
    output = run("SELECT n FROM health.people ORDER BY n", views, max_rows=2)
    assert output.truncated
    assert output.table.column(0).to_pylist() == [1, 2]
    assert not run("SELECT n FROM health.people", views, max_rows=5).truncated


def test_a_runaway_recursive_cte_times_out_and_the_engine_keeps_answering() -> None:
    views = {"health.people": view("health.people", PEOPLE)}
    runaway = (
        "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r) "
        "SELECT count(*) FROM r, health.people"
    )
    with pytest.raises(QueryTimeout):
        run(runaway, views, timeout=0.5)
    assert run("SELECT count(*) FROM health.people", views).table.column(0).to_pylist() == [5]


def test_version_tags_reach_the_view_and_are_stripped_from_the_sql() -> None:
    views = {"health.people": view("health.people", PEOPLE, version=3)}
    executed = plan("SELECT n FROM health.people@v3", views)
    assert "VERSION" not in executed.sql.upper()
    assert executed.parsed.refs[0].version == 3


def test_explain_shows_policy_and_sql_but_no_keys() -> None:
    views = {
        "health.people": view(
            "health.people", PEOPLE, {"person_id": "pseudonym", "zip": "generalise(prefix=3)"}
        )
    }
    explained = plan("SELECT person_id, zip FROM health.people", views).explain()
    assert explained["datasets"][0]["columns"] == [
        {"name": "person_id", "treatment": "pseudonym"},
        {"name": "zip", "treatment": "generalise(prefix=3)"},
    ]
    assert "<key>" in explained["rewritten_sql"]
    leaked = bytes(b ^ 0x36 for b in KEY.ljust(64, b"\0")).hex()
    assert leaked not in json.dumps(explained)


def test_duckdb_errors_do_not_echo_data_values() -> None:
    views = {"health.people": view("health.people", PEOPLE)}
    with pytest.raises(BadRequest) as caught:
        run("SELECT CAST(name AS INTEGER) FROM health.people", views)
    assert "Ada" not in caught.value.message


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_text('/etc/hostname')",
        "SET enable_external_access = true",
        "SET lock_configuration = false",
        "INSTALL httpfs",
        "ATTACH '/tmp/civicshare-sandbox-probe.db' AS probe",
        "COPY (SELECT 1) TO '/tmp/civicshare-sandbox-probe.csv'",
    ],
)
@pytest.mark.parametrize("threads", [1, 2])
def test_the_sandbox_itself_refuses_files_settings_and_extensions(sql: str, threads: int) -> None:
    """Defence in depth: even SQL that got past the parser could not reach files or settings
    (both sandboxes: the one-thread one for small sources and the default one)."""
    from civicshare.query.sandbox import sandbox

    with pytest.raises(BadRequest):
        sandbox(threads=threads).fetch(sql, {}, max_rows=10)


def test_boolean_operators_are_allowed_in_where_clauses() -> None:
    views = {"health.people": view("health.people", PEOPLE)}
    sql = (
        "SELECT n FROM health.people WHERE (zip = '94110' AND age > 30) "
        "OR (NOT zip = '94110' AND n = 2) ORDER BY n"
    )
    assert run(sql, views).table.column(0).to_pylist() == [1, 2, 3]


def test_a_rewrite_with_many_objections_is_not_remembered() -> None:
    """Its key and SQL hold every objection hash; 256 such entries would hold a lot of memory."""
    from civicshare.query import rewrite

    many = frozenset(hmac_hex(f"R-{i:05d}", b"o" * 32) for i in range(1000))
    few = frozenset(list(many)[:3])
    sql = "SELECT count(*) AS n FROM health.people"

    def planned(hashes: frozenset[str]) -> int:
        objector = Exclusion("person_id", b"o" * 32, hashes)
        views = {"health.people": view("health.people", PEOPLE, exclusions=(objector,))}
        rewrite._PLANS.clear()
        built = plan(sql, views)
        assert len(built.sql) > len(hashes) * 64
        return len(rewrite._PLANS)

    assert planned(few) == 1
    assert planned(many) == 0
