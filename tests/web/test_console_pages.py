"""The query console over real HTTP: run, explain, download, and refusals shown next to the editor.

Everything is answered by ``query.run_query`` in the served hub; these tests check that the page
shows what the engine answered (the same rows as the JSON API), keeps what the person typed, and
never answers a form with a 500.
"""

from __future__ import annotations

import csv
import html
import io
import json
import re
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest
from sqlalchemy import select

from civicshare.audit.models import AuditEntry
from civicshare.db import Database
from civicshare.query.parse import query_sha256
from tests.support.hubproc import HubProcess
from tests.web.console_seed import seed_city
from tests.web.portal_client import PortalClient, staff_client

SURVEILLANCE = "public_health_surveillance"
BY_ZIP = "SELECT zip, count(*) AS n FROM health.cases GROUP BY zip ORDER BY zip"
APPLICANTS = (
    "SELECT national_id, family_name, date_of_birth, zip, status "
    "FROM housing.applications ORDER BY submitted_on, national_id LIMIT 25"
)


@pytest.fixture(scope="module")
def hub(hub_process: HubProcess) -> HubProcess:
    seed_city(hub_process)
    return hub_process


def _run(client: PortalClient, sql: str, purpose: str = "", **extra: str) -> httpx.Response:
    form = {"sql": sql, "purpose": purpose, "action": "run", **extra}
    return client.post_form("/console", form, form_page="/console")


def _api(hub: HubProcess, agency: str, sql: str, purpose: str, fmt: str = "json") -> Any:
    with hub.as_role("analyst", agency) as api:
        response = api.post("/api/v1/query", json={"sql": sql, "purpose": purpose, "format": fmt})
    assert response.status_code == 200, response.text
    return response.json() if fmt == "json" else response.content


def _cells(page: str) -> list[list[str]]:
    """The result table's body cells as text (markup removed)."""
    body = page.split('id="result-caption"')[1].split("<tbody>")[1].split("</tbody>")[0]
    rows = re.findall(r"<tr>(.*?)</tr>", body, re.S)
    return [
        [html.unescape(re.sub(r"<[^>]+>", "", cell)).strip() for cell in re.findall(
            r"<td[^>]*>(.*?)</td>", row, re.S)]
        for row in rows
    ]  # fmt: skip


def _query_records(hub: HubProcess, sql: str) -> list[dict[str, Any]]:
    """The query.run audit records of this SQL, oldest first (read from the hub's database)."""
    database = Database(hub.database_url)
    try:
        with database.session() as db:
            rows = db.scalars(
                select(AuditEntry)
                .where(AuditEntry.action.in_(["query.run", "query.explain"]))
                .order_by(AuditEntry.index)
            )
            records = [{**json.loads(row.record), "index": row.index} for row in rows]
    finally:
        database.dispose()
    return [r for r in records if r.get("query_sha256") == query_sha256(sql)]


def _shown(value: Any) -> str:
    return "—empty" if value is None else str(value)


def test_console_needs_a_login(hub: HubProcess) -> None:
    with PortalClient(hub) as anonymous:
        response = anonymous.get("/console", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login?next=")


def test_tables_list_shows_what_the_analyst_may_query(hub: HubProcess) -> None:
    with staff_client(hub, "analyst", "fire_ems") as analyst:
        page = analyst.get("/console").text
        chosen = analyst.get("/console", params={"table": "health.cases"}).text
    aside = page.split('id="tables-title"')[1]
    assert 'data-ref="health.cases" data-purpose="public_health_surveillance"' in aside
    assert "aggregate only, counts under 11 suppressed" in aside
    assert 'data-ref="housing.applications"' not in aside  # shared with health, not fire_ems
    assert '<a href="/console" aria-current="page">Query console</a>' in page
    # A chosen table starts a query its terms allow, under its agreement's purpose.
    starter = html.unescape(chosen.split('id="f-sql"')[1].split("</textarea>")[0].split(">", 1)[1])
    assert "FROM health.cases" in starter
    assert f'<option value="{SURVEILLANCE}" selected>' in chosen
    with staff_client(hub, "analyst", "fire_ems") as analyst:
        assert _run(analyst, starter, SURVEILLANCE).status_code == 200
        # The same dataset under another agreement: its own purpose and a row-level start.
        feed = analyst.get(
            "/console", params={"table": "health.cases", "purpose": "emergency_response"}
        ).text
    assert 'data-ref="health.cases" data-purpose="emergency_response"' in aside
    assert '<option value="emergency_response" selected>' in feed
    assert "LIMIT 100" in feed.split('id="f-sql"')[1].split("</textarea>")[0]


def test_scenario1_counts_by_zip_match_the_api(hub: HubProcess) -> None:
    with staff_client(hub, "analyst", "fire_ems") as analyst:
        response = _run(analyst, BY_ZIP, SURVEILLANCE)
    assert response.status_code == 200, response.text
    expected = _api(hub, "fire_ems", BY_ZIP, SURVEILLANCE)
    shown = _cells(response.text)
    suppressed = {entry["cell"]["zip"]: entry["reason"] for entry in expected["suppressed"]}
    assert suppressed  # the small city has small cells
    for (zip_code, count), row in zip(expected["rows"], shown, strict=True):
        if zip_code in suppressed:
            kind = "complement" if suppressed[zip_code] == "complementary" else "small"
            assert row == [zip_code, f"⊘ suppressed ({kind})"]
        else:
            assert row == [zip_code, _shown(count)]
    assert 'id="suppression-legend"' in response.text
    assert '<th scope="col">zip<span class="type">string</span></th>' in response.text
    assert '<th scope="col">n<span class="type">int64</span></th>' in response.text
    index = re.search(r"recorded as audit entry #(\d+)", response.text)
    assert index is not None
    [record] = [r for r in _query_records(hub, BY_ZIP) if r["index"] == int(index.group(1))]
    assert record["outcome"] == "allowed"
    assert record["actor"]["email"] == hub.login("analyst", "fire_ems").email
    assert record["purpose"] == SURVEILLANCE
    assert record["rows"] == len(shown)
    assert 'data-vega-spec="' in response.text


def test_explain_shows_the_treatments(hub: HubProcess) -> None:
    with staff_client(hub, "analyst", "health") as analyst:
        response = _run(analyst, APPLICANTS, "service_delivery", action="explain")
    assert response.status_code == 200, response.text
    section = response.text.split('id="explain-title"')[1]
    treatments = dict(re.findall(r"<td><code>(\w+)</code></td><td>([^<]+)</td>", section))
    assert treatments["national_id"] == "pseudonym"
    assert treatments["family_name"] == "pseudonym"
    assert treatments["date_of_birth"] == "year_only"
    assert treatments["zip"] == "clear"
    assert "service delivery" in section
    assert 'href="/agreements/' in section
    assert 'id="result-caption"' not in response.text  # nothing was run


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_downloads_are_the_rows_shown(hub: HubProcess, fmt: str) -> None:
    with staff_client(hub, "analyst", "health") as analyst:
        shown = _cells(_run(analyst, APPLICANTS, "service_delivery").text)
        download = analyst.post_form(
            "/console/download",
            {"sql": APPLICANTS, "purpose": "service_delivery", "format": fmt},
            form_page="/console",
        )
        again = analyst.post_form(
            "/console/download",
            {"sql": APPLICANTS, "purpose": "service_delivery", "format": fmt},
            form_page="/console",
        )
    assert download.status_code == 200, download.text
    assert f'.{fmt}"' in download.headers["content-disposition"]
    # Each download is a governed query of its own, with its own audit record.
    assert int(again.headers["x-civicshare-audit-index"]) > int(
        download.headers["x-civicshare-audit-index"]
    )
    if fmt == "csv":
        rows = list(csv.reader(io.StringIO(download.text)))[1:]
    else:
        table = pq.read_table(io.BytesIO(download.content))
        rows = [[_shown(v) for v in row.values()] for row in table.to_pylist()]
    assert [[str(v) for v in row] for row in rows] == shown
    assert all(row[0].startswith("p_") and row[1].startswith("p_") for row in rows)


def test_download_needs_the_csrf_token(hub: HubProcess) -> None:
    with staff_client(hub, "analyst", "health") as analyst:
        response = analyst.http.post(
            "/console/download", data={"sql": APPLICANTS, "purpose": "service_delivery"}
        )
    assert response.status_code == 403
    assert "csrf" in response.text.lower()


RUNAWAY = (
    "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r) "
    "SELECT count(*) FROM r, health.cases"
)


@pytest.mark.parametrize(
    ("sql", "purpose", "code", "status"),
    [
        ("", "", "sql_required", 422),
        ("  \n ", SURVEILLANCE, "sql_required", 422),
        ("SELECT 1 " + "-" * 100_001, "", "payload_too_large", 413),
        ("SELECT 1; SELECT 2", "", "multiple_statements", 403),
        ("SELECT * FROM read_csv('/etc/passwd')", "", "function_not_allowed", 403),
        ("SELECT * FROM health.no_such_table", SURVEILLANCE, "dataset_not_found", 404),
        (BY_ZIP, "spying", "invalid_purpose", 422),
        (BY_ZIP, "research", "wrong_purpose", 403),
        (BY_ZIP, "", "purpose_required", 403),
        ("SELECT * FROM health.cases", SURVEILLANCE, "aggregate_only", 403),
        (
            "SELECT family_name, count(*) AS n FROM health.cases GROUP BY family_name",
            SURVEILLANCE,
            "column_not_granted",
            403,
        ),
        ("SELEC zip FROM health.cases", SURVEILLANCE, "sql_syntax", 400),
        ("ATTACH 'x.db' AS x", "", "statement_not_allowed", 403),
        ("SELECT '<script>alert(1)</script>' AS \"<b>\"", "", None, 200),
    ],
)
def test_bad_input_is_shown_next_to_the_editor(
    hub: HubProcess, sql: str, purpose: str, code: str | None, status: int
) -> None:
    with staff_client(hub, "analyst", "fire_ems") as analyst:
        plain = _run(analyst, sql, purpose)
        token = analyst.csrf_token("/console")
        swapped = analyst.http.post(
            "/console",
            data={"sql": sql, "purpose": purpose, "action": "explain"},
            headers={"hx-request": "true", "x-csrf-token": token},
        )
    assert plain.status_code == status, plain.text
    assert swapped.status_code == 200  # htmx swaps in only 2xx: the refusal is the fragment
    for response in (plain, swapped):
        assert "text/html" in response.headers["content-type"]
        editor = response.text.split('id="f-sql"')[1].split("</textarea>")[0]
        assert html.unescape(editor.split(">", 1)[1]) == sql  # what was typed is kept
        assert "<script>alert" not in response.text
        if code is not None:
            error = response.text.split('id="f-sql-error"')[1].split("</div>")[0]
            assert f"<code>{code}</code>" in error
            assert 'aria-invalid="true"' in response.text
    records = _query_records(hub, sql)
    if code == "sql_required":
        assert records == []  # no query at all: nothing to authorise or record
    elif code is not None:
        # Both attempts (run and explain) were refused and recorded as denied, with the code.
        assert [(r["outcome"], r["reason"]) for r in records[-2:]] == [("denied", code)] * 2


def test_oversized_form_is_refused_without_a_500(hub: HubProcess) -> None:
    with staff_client(hub, "analyst", "fire_ems") as analyst:
        response = _run(analyst, "SELECT 1 --" + "x" * 1_000_001)
    assert 400 <= response.status_code < 500
    assert "text/html" in response.headers["content-type"]


@pytest.mark.parametrize("limit", ["abc", "0", "31", "nan"])
def test_a_bad_time_limit_is_shown_next_to_the_editor(hub: HubProcess, limit: str) -> None:
    with staff_client(hub, "analyst", "health") as analyst:
        response = _run(analyst, "SELECT count(*) FROM health.cases", timeout=limit)
    assert response.status_code == 422
    assert "<code>invalid_timeout</code>" in response.text
    assert f'name="timeout" type="text" inputmode="decimal" class="short" value="{limit}"' in (
        response.text
    )


def test_a_runaway_query_is_stopped_at_the_time_limit(hub: HubProcess) -> None:
    with staff_client(hub, "analyst", "health") as analyst:
        response = _run(analyst, RUNAWAY, timeout="1")
        after = _run(analyst, "SELECT count(*) AS n FROM health.cases")
    assert response.status_code == 408
    assert "<code>query_timeout</code>" in response.text.split('id="f-sql-error"')[1]
    assert after.status_code == 200  # the hub keeps answering


def test_long_results_are_truncated_on_the_page_but_not_in_downloads(hub: HubProcess) -> None:
    numbers = (
        "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < 1500) "
        "SELECT i FROM r ORDER BY i"
    )
    with staff_client(hub, "analyst", "health") as analyst:
        page = _run(analyst, numbers)
        download = analyst.post_form(
            "/console/download", {"sql": numbers, "format": "csv"}, form_page="/console"
        )
    assert page.status_code == 200, page.text
    shown = _cells(page.text)
    assert 'id="truncated-notice"' in page.text
    assert len(shown) < 1500
    lines = download.text.splitlines()
    assert len(lines) == 1 + 1500  # header and every row
    assert [row[0] for row in shown] == lines[1 : 1 + len(shown)]


def test_a_table_that_is_not_queryable_starts_an_empty_editor(hub: HubProcess) -> None:
    with staff_client(hub, "analyst", "fire_ems") as analyst:
        page = analyst.get("/console", params={"table": "housing.applications"}).text
    editor = page.split('id="f-sql"')[1].split("</textarea>")[0]
    assert editor.endswith(">")
