"""My agency pages over real HTTP: create from a sample, uploads with reports, history, errors.

Every invalid input of the forms gets an error next to its field (status 422, what was typed
kept) and never a 500; the hub's upload limit is a readable page; quarantined values reach only
the owning agency's stewards and never the hub's log.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from typing import Any

import httpx
import openpyxl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from civicshare.config import Settings
from tests.conftest import BACKENDS, database_for
from tests.support.hubproc import HubProcess, start_hub_process
from tests.web.portal_client import PortalClient

SAMPLE_CSV = (
    "Station ID,Reading Day,Bikes,Contact Email\n"
    + "".join(
        f"st{i % 4},2026-03-{1 + i % 28:02d},{i * 3},rider{i}@example.org\n" for i in range(40)
    )
).encode()
# A dataset whose schema names one rule per planted error kind.
COUNTS: dict[str, Any] = {
    "agency": "transport",
    "slug": "planted_counts",
    "title": "Counter readings with planted errors",
    "visibility": "hub",
    "table_schema": {
        "fields": [
            {"name": "day", "type": "date", "constraints": {"required": True}},
            {
                "name": "counter",
                "type": "string",
                "constraints": {"enum": ["fremont", "spokane"]},
            },
            {"name": "bikes", "type": "integer", "constraints": {"minimum": 0}},
            {
                "name": "reporter",
                "type": "string",
                "classification": "personal",
                "pii": "name",
                "constraints": {"maxLength": 20},
            },
        ]
    },
}
GOOD_ROW = "2026-01-{day:02d},fremont,{n},Alex Rider\n"
# 20 rows: 2 type errors, 1 required, 3 enum, 1 minimum, each on a row of its own.
PLANTED = (
    "day,counter,bikes,reporter\n"
    + "".join(GOOD_ROW.format(day=d, n=d) for d in range(1, 14))
    + "2026-01-14,fremont,many,Alex Rider\n"
    + "2026-01-15,spokane,lots,Alex Rider\n"
    + ",spokane,4,Alex Rider\n"
    + "2026-01-17,nowhere,5,Alex Rider\n"
    + "2026-01-18,elsewhere,6,Alex Rider\n"
    + "2026-01-19,nowhere,7,Alex Rider\n"
    + "2026-01-20,fremont,-5,Alex Rider\n"
)
SECRET_NAME = "Zelda Quarantinova-Oberhausen"
SECRET_NAME_ROW = f"2026-02-01,fremont,3,{SECRET_NAME}\n"


@pytest.fixture(scope="module")
def hub(hub_process: HubProcess) -> HubProcess:
    with hub_process.as_role("steward", "transport") as steward:
        created = steward.post("/api/v1/datasets", json=COUNTS)
        assert created.status_code == 201, created.text
    return hub_process


def _portal(hub: HubProcess, role: str, agency: str) -> PortalClient:
    client = PortalClient(hub)
    login = hub.login(role, agency)
    client.log_in(login.email, login.password)
    return client


@pytest.fixture
def steward(hub: HubProcess) -> Iterator[PortalClient]:
    with _portal(hub, "steward", "transport") as client:
        yield client


def _post_file(
    portal: PortalClient,
    path: str,
    data: dict[str, Any],
    file: tuple[str, bytes, str] | None,
    *,
    form_page: str,
) -> httpx.Response:
    token = portal.csrf_token(form_page)
    files = {"file": file} if file is not None else {"file": ("", b"", "application/octet-stream")}
    return portal.http.post(path, data={**data, "csrf_token": token}, files=files)


def _field_error(page: str, name: str) -> str:
    match = re.search(rf'id="f-{name}-error"[^>]*>(.*?)</p>', page, re.S)
    assert match, f"no error shown next to {name}"
    return re.sub(r"<[^>]+>", "", match.group(1)).strip()


def _review(steward: PortalClient, **values: str) -> dict[str, str]:
    """The create form as the proposal step fills it: the sample's columns and their choices."""
    page = _post_file(
        steward,
        "/my-agency/new/upload",
        {"step": "infer"},
        ("readings.csv", SAMPLE_CSV, "text/csv"),
        form_page="/my-agency/new",
    )
    assert page.status_code == 200, page.text
    form: dict[str, str] = {}
    for name, value in re.findall(r'name="(name_\d+)" value="([^"]*)"', page.text):
        form[name] = value
    for name, options in re.findall(
        r'name="((?:classification|pii)_\d+)"[^>]*>(.*?)</select>', page.text, re.S
    ):
        chosen = re.search(r'<option value="([^"]*)" selected', options)
        form[name] = chosen.group(1) if chosen else ""
    for name in re.findall(r'name="((?:required|unique)_\d+)" value="1" checked', page.text):
        form[name] = "1"
    return {**form, "step": "create", "visibility": "hub", **values}


def _create(steward: PortalClient, form: dict[str, str]) -> httpx.Response:
    return _post_file(
        steward,
        "/my-agency/new/upload",
        form,
        ("readings.csv", SAMPLE_CSV, "text/csv"),
        form_page="/my-agency/new",
    )


def test_my_agency_lists_own_datasets_and_only_stewards_may_create(hub: HubProcess) -> None:
    with _portal(hub, "steward", "transport") as steward:
        page = steward.get("/my-agency")
        assert page.status_code == 200
        assert 'href="/my-agency"' in page.text  # the navigation link
        assert 'href="/my-agency/planted_counts"' in page.text
        assert 'href="/my-agency/new"' in page.text
    with _portal(hub, "analyst", "transport") as analyst:
        page = analyst.get("/my-agency")
        assert 'href="/my-agency/planted_counts"' in page.text
        assert 'href="/my-agency/new"' not in page.text
        assert analyst.get("/my-agency/new").status_code == 403
        refused = _post_file(
            analyst,
            "/my-agency/new/upload",
            {"step": "create", "title": "Mine", "slug": "analyst_made"},
            ("readings.csv", SAMPLE_CSV, "text/csv"),
            form_page="/my-agency",
        )
        assert refused.status_code == 403
    with _portal(hub, "steward", "health") as other:
        assert "planted_counts" not in other.get("/my-agency").text
        assert other.get("/my-agency/planted_counts").status_code == 404
    with PortalClient(hub) as public:
        assert public.get("/my-agency").status_code == 303  # to the login page


def test_sample_proposes_a_schema_with_personal_columns_marked(steward: PortalClient) -> None:
    form = _review(steward)
    names = [form[f"name_{i}"] for i in range(4)]
    assert names == ["station_id", "reading_day", "bikes", "contact_email"]
    assert form["classification_3"] == "personal"
    assert form["pii_3"] == "email"


def test_create_with_adjusted_classification_and_first_version(
    steward: PortalClient, hub: HubProcess
) -> None:
    form = _review(steward, title="Readings", slug="readings_made", license="CC-BY-4.0")
    form.update(classification_0="public", classification_1="public", ingest_sample="1")
    form["required_1"] = "1"
    created = _create(steward, form)
    assert created.status_code == 303, created.text
    report = steward.get(created.headers["location"])
    assert "Stored as version 1" in report.text
    with hub.as_role("steward", "transport") as api:
        detail = api.get("/api/v1/datasets/transport/readings_made").json()
    fields = {f["name"]: f for f in detail["table_schema"]["fields"]}
    assert fields["station_id"]["classification"] == "public"
    assert fields["reading_day"]["constraints"]["required"] is True
    assert fields["contact_email"]["classification"] == "personal"
    history = steward.get("/my-agency/readings_made")
    assert re.search(
        r'<td class="num">1</td>.*?<td>append</td><td class="num">40</td>', history.text, re.S
    )
    assert "steward.transport@" in history.text


def test_create_errors_are_shown_next_to_fields_and_keep_the_input(
    steward: PortalClient,
) -> None:
    form = _review(steward, title="Kept title", slug="Not A Slug!")
    page = _create(steward, form)
    assert page.status_code == 422
    assert _field_error(page.text, "slug")
    assert 'value="Kept title"' in page.text
    assert 'value="Not A Slug!"' in page.text

    taken = _create(steward, {**form, "slug": "planted_counts"})
    assert taken.status_code == 422
    assert "already exists" in _field_error(taken.text, "slug")

    untitled = _create(steward, {**form, "title": "", "slug": "untitled_one"})
    assert untitled.status_code == 422
    assert _field_error(untitled.text, "title") == "Error: Fill in this field."

    public_personal = _create(steward, {**form, "slug": "leaky", "visibility": "public"})
    assert public_personal.status_code == 422
    assert "contact_email" in _field_error(public_personal.text, "visibility")

    bad_email = _create(steward, {**form, "slug": "mailer", "contact": "not-an-email"})
    assert bad_email.status_code == 422
    assert _field_error(bad_email.text, "contact")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"classification_0": "top-secret"}, "classification_0"),
        ({"pii_2": "shoe_size"}, "pii_2"),
        ({"name_1": "renamed"}, "file"),
        ({"visibility": "everyone"}, "visibility"),
        ({"frequency": "sometimes"}, "frequency"),
    ],
)
def test_tampered_choices_are_refused_at_their_field(
    steward: PortalClient, change: dict[str, str], field: str
) -> None:
    form = _review(steward, title="T", slug="tampered")
    page = _create(steward, {**form, **change})
    assert page.status_code == 422, page.text
    assert "Error" in page.text
    assert _field_error(page.text, field)


@pytest.mark.parametrize(
    ("file", "message"),
    [
        (None, "Choose a file"),
        (("empty.csv", b"", "text/csv"), "empty"),
        (("broken.xlsx", b"PK\x03\x04 this is no workbook", "application/zip"), "cannot be read"),
        (("broken.parquet", b"PAR1 not really", "application/octet-stream"), "cannot be read"),
        (("bad.json", b'[{"a": 1}, {"a": ', "application/json"), "cannot be read"),
        (("latin.csv", "name\nJos\xe9\n".encode("latin-1"), "text/csv"), None),
    ],
)
def test_unreadable_samples_get_an_error_at_the_file_field(
    steward: PortalClient, file: tuple[str, bytes, str] | None, message: str | None
) -> None:
    page = _post_file(
        steward, "/my-agency/new/upload", {"step": "infer"}, file, form_page="/my-agency/new"
    )
    if message is None:  # a readable file in another encoding is fine
        assert page.status_code == 200
        return
    assert page.status_code == 422, page.text
    assert message in _field_error(page.text, "file")


def test_upload_report_counts_each_rule_and_shows_the_quarantine(
    steward: PortalClient, hub: HubProcess
) -> None:
    page = _post_file(
        steward,
        "/my-agency/planted_counts/upload",
        {"mode": "append", "max_error_percent": "50"},
        ("planted.csv", (PLANTED + SECRET_NAME_ROW).encode(), "text/csv"),
        form_page="/my-agency/planted_counts",
    )
    assert page.status_code == 200, page.text
    counts = dict(re.findall(r'<th scope="row">(\w+)</th><td class="num">(\d+)</td>', page.text))
    assert counts == {"type": "2", "required": "1", "enum": "3", "minimum": "1", "maxLength": "1"}
    # 21 rows, one planted error on each of 8 of them.
    assert "Stored as version" in page.text
    assert "13 of 21 rows accepted, 8 rejected" in page.text
    for value in ("many", "lots", "nowhere", "elsewhere", "-5", SECRET_NAME):
        assert f"<code>{value}</code>" in page.text
    # The steward sees the personal value; the hub's log never does.
    assert SECRET_NAME not in hub.log_text()


def test_over_the_limit_batch_stores_nothing(steward: PortalClient, hub: HubProcess) -> None:
    def versions() -> int:
        with hub.as_role("steward", "transport") as api:
            found = api.get("/api/v1/datasets/transport/planted_counts/versions")
            assert found.status_code == 200, found.text
            return len(found.json())

    before = versions()
    page = _post_file(
        steward,
        "/my-agency/planted_counts/upload",
        {"mode": "append", "max_error_percent": "5"},
        ("planted.csv", PLANTED.encode(), "text/csv"),
        form_page="/my-agency/planted_counts",
    )
    assert page.status_code == 200
    assert "Nothing was stored" in page.text
    assert versions() == before
    assert "rejected, nothing stored" in page.text  # in the upload list below


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"max_error_percent": "lots"}, "max_error_percent"),
        ({"max_error_percent": "150"}, "max_error_percent"),
        ({"max_error_percent": "nan"}, "max_error_percent"),
        ({"mode": "merge"}, "mode"),
        ({"mode": "upsert"}, "key"),
        ({"mode": "delete", "key": "no_such_column"}, "key"),
        ({"mode": "append", "key": "day"}, "key"),
    ],
)
def test_upload_form_errors_stay_next_to_their_field(
    steward: PortalClient, data: dict[str, str], field: str
) -> None:
    page = _post_file(
        steward,
        "/my-agency/planted_counts/upload",
        {"mode": "append", "max_error_percent": "5", **data},
        ("planted.csv", PLANTED.encode(), "text/csv"),
        form_page="/my-agency/planted_counts",
    )
    assert page.status_code == 422, page.text
    assert _field_error(page.text, field)
    if "max_error_percent" in data:
        assert f'value="{data["max_error_percent"]}"' in page.text


def test_upload_without_file_or_with_a_bad_file(steward: PortalClient) -> None:
    wrong_columns = ("readings.csv", SAMPLE_CSV, "text/csv")  # another dataset's file
    bad_files = [("x.csv", b"", "text/csv"), ("x.xlsx", b"PK\x03\x04junk", "text/plain")]
    for file in (None, wrong_columns, *bad_files):
        page = _post_file(
            steward,
            "/my-agency/planted_counts/upload",
            {"mode": "append", "max_error_percent": "5"},
            file,
            form_page="/my-agency/planted_counts",
        )
        assert page.status_code == 422, page.text
        assert _field_error(page.text, "file")


def test_quarantine_is_for_the_owning_agencys_stewards_only(hub: HubProcess) -> None:
    with _portal(hub, "steward", "transport") as steward:
        stored = _post_file(
            steward,
            "/my-agency/planted_counts/upload",
            {"mode": "append", "max_error_percent": "100"},
            ("names.csv", ("day,counter,bikes,reporter\n" + SECRET_NAME_ROW).encode(), "text/csv"),
            form_page="/my-agency/planted_counts",
        )
        assert f"<code>{SECRET_NAME}</code>" in stored.text
        link = re.search(r'href="(/my-agency/planted_counts/ingests/\w+)">names.csv', stored.text)
        assert link
        again = steward.get(link.group(1))
        assert f"<code>{SECRET_NAME}</code>" in again.text
    with _portal(hub, "analyst", "transport") as analyst:
        page = analyst.get("/my-agency/planted_counts")
        assert page.status_code == 200  # versions and schemas, but no reports or upload form
        assert "Upload data" not in page.text
        assert "shown to the agency's data stewards" in page.text
        report = analyst.get(link.group(1))
        assert report.status_code == 403
        assert SECRET_NAME not in report.text
        refused = _post_file(
            analyst,
            "/my-agency/planted_counts/upload",
            {"mode": "append", "max_error_percent": "5"},
            ("x.csv", PLANTED.encode(), "text/csv"),
            form_page="/my-agency/planted_counts",
        )
        assert refused.status_code == 403
    with _portal(hub, "steward", "health") as other:
        assert other.get(link.group(1)).status_code == 404
    assert SECRET_NAME not in hub.log_text()


def test_uploads_need_the_form_token(steward: PortalClient) -> None:
    response = steward.http.post(
        "/my-agency/planted_counts/upload",
        data={"mode": "append"},
        files={"file": ("x.csv", PLANTED.encode(), "text/csv")},
    )
    assert response.status_code == 403
    assert "form has expired" in response.text


def test_a_malformed_multipart_body_is_a_page_not_a_500(steward: PortalClient) -> None:
    token = steward.csrf_token("/my-agency/planted_counts")
    response = steward.http.post(
        "/my-agency/planted_counts/upload",
        content=b'--xyz\r\nContent-Disposition: form-data; name="file"\r\n\r\nunterminated',
        headers={"content-type": "multipart/form-data; boundary=xyz", "x-csrf-token": token},
    )
    assert response.status_code in (400, 422)
    assert "text/html" in response.headers["content-type"]


@pytest.fixture(scope="module", params=BACKENDS)
def small_hub(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HubProcess]:
    """A hub whose upload limit is 4 KiB, so the limit is reached with a small file."""
    folder = tmp_path_factory.mktemp(f"small-{request.param}")
    with database_for(request.param, folder) as url, pytest.MonkeyPatch.context() as env:
        env.setenv("CIVICSHARE_MAX_UPLOAD_BYTES", "4096")
        settings = Settings(home=folder / "home", database_url=url)
        with start_hub_process(settings, people=10) as proc:
            with proc.as_role("steward", "transport") as api:
                assert api.post("/api/v1/datasets", json=COUNTS).status_code == 201
            yield proc


BIG = b"day,counter,bikes,reporter\n" + b"2026-01-01,fremont,1,A\n" * 400


@pytest.mark.parametrize("path", ["/my-agency/new/upload", "/my-agency/planted_counts/upload"])
def test_a_file_over_the_upload_limit_is_refused_at_the_file_field(
    small_hub: HubProcess, path: str
) -> None:
    with _portal(small_hub, "steward", "transport") as steward:
        page = _post_file(
            steward,
            path,
            {"step": "infer", "mode": "append", "max_error_percent": "5"},
            ("big.csv", BIG, "text/csv"),
            form_page="/my-agency/new",
        )
        assert page.status_code == 413
        assert "text/html" in page.headers["content-type"]
        assert "larger than this hub accepts (4.0 KB)" in _field_error(page.text, "file")
        assert 'data-max-bytes="4096"' in page.text  # the browser checks before sending, too


def test_a_streamed_body_over_the_limit_is_a_page_too(small_hub: HubProcess) -> None:
    with _portal(small_hub, "steward", "transport") as steward:
        token = steward.csrf_token("/my-agency/new")
        boundary = "limitboundary"
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.csv"'
            "\r\nContent-Type: text/csv\r\n\r\n"
        ).encode()

        def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is met while streaming
            yield head
            yield BIG
            yield f"\r\n--{boundary}--\r\n".encode()

        page = steward.http.post(
            "/my-agency/new/upload",
            content=chunks(),
            headers={
                "content-type": f"multipart/form-data; boundary={boundary}",
                "x-csrf-token": token,
            },
        )
        assert page.status_code == 413
        assert "larger than this hub accepts" in page.text


def _parquet(rows: int) -> bytes:
    table = pa.table({"zone": [f"z{i % 3}" for i in range(rows)], "count": list(range(rows))})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def _xlsx(rows: int) -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["zone", "count"])
    for i in range(rows):
        sheet.append([f"z{i % 3}", i])
    sink = io.BytesIO()
    book.save(sink)
    return sink.getvalue()


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("zones.parquet", _parquet(30)),
        ("zones.xlsx", _xlsx(30)),
        (
            "zones.ndjson",
            b"".join(b'{"zone": "z%d", "count": %d}\n' % (i % 3, i) for i in range(30)),
        ),
        ("zones.csv", b"zone,count\n"),  # a header and no rows
    ],
)
def test_every_reader_format_can_start_a_dataset(
    steward: PortalClient, name: str, content: bytes
) -> None:
    slug = "zones_" + name.rsplit(".", 1)[1]
    sample = (name, content, "application/octet-stream")
    proposed = _post_file(
        steward, "/my-agency/new/upload", {"step": "infer"}, sample, form_page="/my-agency/new"
    )
    assert proposed.status_code == 200, proposed.text
    assert 'name="name_1" value="count"' in proposed.text
    form = {
        "step": "create",
        "title": f"Zones from {name}",
        "slug": slug,
        "visibility": "private",
        "name_0": "zone",
        "name_1": "count",
        "classification_0": "internal",
        "classification_1": "internal",
        "ingest_sample": "1",
    }
    created = _post_file(steward, "/my-agency/new/upload", form, sample, form_page="/my-agency/new")
    assert created.status_code == 303, created.text
    report = steward.get(created.headers["location"])
    rows = content.count(b"\n") - 1 if name.endswith(".csv") else 30
    assert f"Stored as version 1: {rows} of {rows} rows accepted" in report.text


def test_history_flags_a_breaking_schema_version(steward: PortalClient, hub: HubProcess) -> None:
    spec = {**COUNTS, "slug": "schema_history", "title": "Schema history"}
    narrower = {"fields": [f for f in COUNTS["table_schema"]["fields"] if f["name"] != "reporter"]}
    with hub.as_role("steward", "transport") as api:
        assert api.post("/api/v1/datasets", json=spec).status_code == 201
        path = "/api/v1/datasets/transport/schema_history/schema"
        changed = api.put(path, json={"table_schema": narrower, "breaking": True})
        assert changed.status_code == 200, changed.text
    page = steward.get("/my-agency/schema_history")
    schemas = page.text.split('id="schemas-title"')[1]
    first, second = (re.search(rf'<td class="num">{n}.*?</tr>', schemas, re.S) for n in (1, 2))
    assert first
    assert second
    assert '<span class="badge sensitive">breaking</span>' in second.group(0)
    assert "reporter" in second.group(0)  # the change names the removed field
    assert "breaking</span>" not in first.group(0)
    assert "current" in second.group(0)
