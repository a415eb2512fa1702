"""Delta Sharing end to end: the official client against a real hub process, compared with the
governed query engine and with the versions written."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import delta_sharing
import httpx
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from delta_sharing import SharingClient
from requests.exceptions import HTTPError

from civicshare.audit.models import AuditEntry
from civicshare.db import Database
from civicshare.policy import service as policy
from civicshare.query import service as query
from civicshare.sharing.signing import FILE_URL_LABEL, sign_grant, verify_grant
from tests.policy.kit import agreement
from tests.sharing.kit import (
    GRANTED,
    PURPOSE,
    City,
    build_city,
    hub_of,
    save_profile,
    steward_profile,
)
from tests.sharing.test_delta_views import assert_protocol_error, open_data_profile
from tests.support.datasets import person
from tests.support.hubproc import HubProcess, hub_environment

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def city(hub_process: HubProcess) -> City:
    return build_city(hub_process, "e2e")


@pytest.fixture(scope="module")
def profile(
    hub_process: HubProcess, city: City, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, Any]]:
    created = steward_profile(hub_process, city.agreement_id, history=True, name="e2e")
    return save_profile(tmp_path_factory.mktemp("profile"), created), created


def table_url(path: Path, city: City, dataset: str = "cases") -> str:
    data = city.cases if dataset == "cases" else city.sensors
    share = city.agreement_id if dataset == "cases" else "open_data"
    return f"{path}#{share}.{data.agency.slug}.{data.slug}"


def normalise(frame: pd.DataFrame, columns: list[str]) -> list[tuple[Any, ...]]:
    rows = []
    for record in frame[columns].to_dict("records"):
        rows.append(tuple(None if pd.isna(v) else _plain(v) for v in record.values()))
    return sorted(rows, key=repr)


def _plain(value: Any) -> Any:
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if hasattr(value, "item"):
        return value.item()
    return value


def expected_view(table: pa.Table) -> list[tuple[Any, ...]]:
    """What the agreement lets fire_ems see of a version: granted columns, names redacted."""
    rows = [
        tuple("[redacted]" if name == "full_name" else row[name] for name in GRANTED)
        for row in table.to_pylist()
    ]
    return sorted(rows, key=repr)


def test_list_all_tables_shows_the_agreement_and_open_data_tables(
    profile: tuple[Path, dict[str, Any]], city: City
) -> None:
    path, created = profile
    assert created["profile"]["share"] == city.agreement_id
    tables = SharingClient(str(path)).list_all_tables()
    found = {(t.share, t.schema, t.name) for t in tables}
    assert (city.agreement_id, "health", city.cases.slug) in found
    assert ("open_data", "transport", city.sensors.slug) in found
    assert all(t.schema != "health" for t in tables if t.share == "open_data")


def test_load_as_pandas_equals_the_governed_query(
    hub_process: HubProcess, profile: tuple[Path, dict[str, Any]], city: City
) -> None:
    path, _created = profile
    frame = delta_sharing.load_as_pandas(table_url(path, city))
    assert list(frame.columns) == list(GRANTED)
    with hub_of(hub_process) as hub, hub.db.session() as db:
        governed = query.run_query(
            db=db,
            hub=hub,
            actor=city.recipient,
            sql=f"SELECT * FROM {city.cases.ref}",
            purpose=PURPOSE,
        )
    assert governed.table is not None
    columns = list(GRANTED)
    assert normalise(frame, columns) == normalise(governed.table.to_pandas(), columns)
    assert normalise(frame, columns) == expected_view(city.versions[-1])
    assert set(frame["full_name"]) == {"[redacted]"}
    assert "diagnosis" not in frame.columns


def test_open_data_loads_for_anyone_with_a_profile(
    hub_process: HubProcess, profile: tuple[Path, dict[str, Any]], city: City
) -> None:
    path, _ = profile
    frame = delta_sharing.load_as_pandas(table_url(path, city, "sensors"))
    assert len(frame) == 50
    assert list(frame.columns) == ["station", "reading", "taken"]
    assert frame["taken"].min() == pd.Timestamp("2026-03-01T00:00:00Z")


def test_time_travel_returns_each_versions_contents(
    profile: tuple[Path, dict[str, Any]], city: City
) -> None:
    path, _ = profile
    url = table_url(path, city)
    assert delta_sharing.get_table_version(url) == len(city.versions)
    for number, table in enumerate(city.versions, start=1):
        frame = delta_sharing.load_as_pandas(url, version=number)
        assert normalise(frame, list(GRANTED)) == expected_view(table), f"version {number}"
    # Whole seconds, rounded up: the city may have been written within the current second.
    moment = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)).isoformat(timespec="seconds")
    latest = delta_sharing.load_as_pandas(url, timestamp=moment.replace("+00:00", "Z"))
    assert normalise(latest, list(GRANTED)) == expected_view(city.versions[-1])


def expected_changes(city: City) -> Counter[tuple[int, int, str, int]]:
    """(case_id, age, change type, version), computed from the versions by primary key."""
    changes: Counter[tuple[int, int, str, int]] = Counter()
    previous: dict[int, dict[str, Any]] = {}
    for number, table in enumerate(city.versions, start=1):
        current = {row["case_id"]: row for row in table.to_pylist()}
        for key, row in current.items():
            if key not in previous:
                changes[(key, row["age"], "insert", number)] += 1
            elif row != previous[key]:
                changes[(key, previous[key]["age"], "update_preimage", number)] += 1
                changes[(key, row["age"], "update_postimage", number)] += 1
        for key, row in previous.items():
            if key not in current:
                changes[(key, row["age"], "delete", number)] += 1
        previous = current
    return changes


def test_change_data_feed_is_exact_after_appends_upserts_and_deletes(
    profile: tuple[Path, dict[str, Any]], city: City
) -> None:
    path, _ = profile
    frame = delta_sharing.load_table_changes_as_pandas(
        table_url(path, city), starting_version=1, ending_version=len(city.versions)
    )
    assert list(frame.columns)[-3:] == ["_change_type", "_commit_version", "_commit_timestamp"]
    found = Counter(
        zip(
            frame["case_id"].tolist(),
            frame["age"].tolist(),
            frame["_change_type"].tolist(),
            frame["_commit_version"].tolist(),
            strict=True,
        )
    )
    assert found == expected_changes(city)
    assert (
        frame["_commit_timestamp"].is_monotonic_increasing
        or len(set(frame["_commit_timestamp"])) > 1
    )
    later = delta_sharing.load_table_changes_as_pandas(table_url(path, city), starting_version=4)
    assert Counter(later["_change_type"]) == Counter({"delete": 2})


def query_lines(client: httpx.Client, city: City, body: dict[str, Any]) -> list[dict[str, Any]]:
    response = client.post(
        f"/delta-sharing/shares/{city.agreement_id}/schemas/health/tables/{city.cases.slug}/query",
        json=body,
    )
    assert response.status_code == 200, response.text
    return [json.loads(line) for line in response.text.splitlines()]


def test_file_urls_answer_head_and_ranges_without_a_token(
    hub_process: HubProcess, profile: tuple[Path, dict[str, Any]], city: City
) -> None:
    _, created = profile
    with hub_process.client(created["profile_file"]["bearerToken"]) as client:
        lines = query_lines(client, city, {})
    files = [line["file"] for line in lines if "file" in line]
    assert files
    with httpx.Client(timeout=30) as anonymous:
        url, size = files[0]["url"], files[0]["size"]
        head = anonymous.head(url)
        assert head.status_code == 200
        assert int(head.headers["content-length"]) == size
        whole = anonymous.get(url)
        assert len(whole.content) == size
        part = anonymous.get(url, headers={"Range": "bytes=4-99"})
        assert part.status_code == 206
        assert part.content == whole.content[4:100]
        assert part.headers["content-range"] == f"bytes 4-99/{size}"
        tail = anonymous.get(url, headers={"Range": "bytes=-8"})
        assert tail.content == whole.content[-8:]
        assert tail.content.endswith(b"PAR1")
        assert anonymous.get(url, headers={"Range": f"bytes={size}-"}).status_code == 416
    table = pq.read_table(pa.BufferReader(whole.content))
    assert table.column_names == list(GRANTED)
    signature = url.partition("?signature=")[2]
    assert signature not in hub_process.log_text(), "signatures stay out of the access log"
    stats = json.loads(files[0]["stats"])
    assert stats["numRecords"] == table.num_rows


def test_tampered_and_expired_file_urls_are_refused(
    hub_process: HubProcess, profile: tuple[Path, dict[str, Any]], city: City
) -> None:
    _, created = profile
    with hub_process.client(created["profile_file"]["bearerToken"]) as client:
        url = next(line["file"]["url"] for line in query_lines(client, city, {}) if "file" in line)
    base, _, last = url.rpartition("/")
    payload, _, signature = last.partition("?signature=")
    token = f"{payload}.{signature}"
    with hub_of(hub_process) as hub:
        key = hub.keys.derive(FILE_URL_LABEL)
        grant = verify_grant(key, token, now=time.time())
        import dataclasses

        other_dataset = sign_grant(b"x" * 32, dataclasses.replace(grant, dataset=grant.dataset + 1))
        expired = sign_grant(key, dataclasses.replace(grant, expires=int(time.time()) - 1))
    with httpx.Client(timeout=30) as anonymous:
        flipped = signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")
        for bad in [
            f"{base}/{payload}?signature={flipped}",
            f"{base}/{other_dataset.split('.')[0]}?signature={signature}",
            f"{base}/garbage?signature=x",
        ]:
            assert_protocol_error(anonymous.get(bad), 403, "PERMISSION_DENIED")
        assert_protocol_error(anonymous.get(f"{base}/{payload}"), 400, "MALFORMED_REQUEST")
        expired_payload, _, expired_signature = expired.partition(".")
        message = assert_protocol_error(
            anonymous.get(f"{base}/{expired_payload}?signature={expired_signature}"),
            403,
            "PERMISSION_DENIED",
        )
        assert "expired" in message


def test_bad_requests_get_clear_protocol_errors(
    hub_process: HubProcess, profile: tuple[Path, dict[str, Any]], city: City
) -> None:
    _, created = profile
    table = f"/delta-sharing/shares/{city.agreement_id}/schemas/health/tables/{city.cases.slug}"
    with hub_process.client(created["profile_file"]["bearerToken"]) as client:
        both = client.post(
            table + "/query", json={"version": 1, "timestamp": "2026-01-01T00:00:00Z"}
        )
        assert_protocol_error(both, 400, "INVALID_PARAMETER_VALUE")
        missing = client.post(table + "/query", json={"version": 99})
        assert_protocol_error(missing, 400, "INVALID_PARAMETER_VALUE")
        garbled = client.post(
            table + "/query", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert_protocol_error(garbled, 400, "MALFORMED_REQUEST")
        stream = client.post(table + "/query", json={"startingVersion": 1})
        assert_protocol_error(stream, 400, "UNSUPPORTED_OPERATION")
        bad_time = client.get(table + "/changes", params={"startingTimestamp": "yesterday"})
        assert_protocol_error(bad_time, 400, "INVALID_PARAMETER_VALUE")
        no_start = client.get(table + "/changes")
        assert_protocol_error(no_start, 400, "INVALID_PARAMETER_VALUE")
        past_end = client.get(table + "/changes", params={"startingVersion": 1, "endingVersion": 9})
        assert_protocol_error(past_end, 400, "INVALID_PARAMETER_VALUE")
        unknown = client.get(
            f"/delta-sharing/shares/{city.agreement_id}/schemas/health/tables/nope/metadata"
        )
        assert_protocol_error(unknown, 404, "RESOURCE_DOES_NOT_EXIST")
        other = client.get("/delta-sharing/shares/agr_0000000000000000/all-tables")
        assert_protocol_error(other, 404, "RESOURCE_DOES_NOT_EXIST")
        token = client.get(
            f"/delta-sharing/shares/{city.agreement_id}/all-tables", params={"pageToken": "x.y"}
        )
        assert_protocol_error(token, 400, "INVALID_PARAMETER_VALUE")


def test_metadata_and_version_calls(
    hub_process: HubProcess, profile: tuple[Path, dict[str, Any]], city: City
) -> None:
    _, created = profile
    table = (
        f"/delta-sharing/shares/{city.agreement_id}/schemas/HEALTH/tables/{city.cases.slug.upper()}"
    )
    with hub_process.client(created["profile_file"]["bearerToken"]) as client:
        version = client.get(table + "/version")
        assert version.headers["delta-table-version"] == str(len(city.versions))
        metadata = client.get(table + "/metadata")
        assert metadata.headers["content-type"].startswith("application/x-ndjson")
        assert "delta-sharing-capabilities" not in metadata.headers
        protocol, meta = (json.loads(line) for line in metadata.text.splitlines())
        assert protocol == {"protocol": {"minReaderVersion": 1}}
        schema = json.loads(meta["metaData"]["schemaString"])
        assert [f["name"] for f in schema["fields"]] == list(GRANTED)
        assert {f["name"]: f["type"] for f in schema["fields"]}["report_date"] == "date"
        assert meta["metaData"]["configuration"] == {"enableChangeDataFeed": "true"}
        limited = query_lines(client, city, {"limitHint": 1})
        assert sum("file" in line for line in limited) == 1


def test_a_profile_without_history_cannot_time_travel(
    hub_process: HubProcess, city: City, tmp_path: Path
) -> None:
    created = steward_profile(hub_process, city.agreement_id, name="no-history")
    path = save_profile(tmp_path, created)
    url = table_url(path, city)
    assert len(delta_sharing.load_as_pandas(url)) == city.versions[-1].num_rows
    with pytest.raises(HTTPError) as caught:
        delta_sharing.load_as_pandas(url, version=1)
    assert caught.value.response.status_code == 403
    with pytest.raises(HTTPError) as caught:
        delta_sharing.load_table_changes_as_pandas(url, starting_version=1)
    assert caught.value.response.status_code == 403


def test_history_is_granted_by_the_agreement_not_by_the_profile(
    hub_process: HubProcess, city: City
) -> None:
    with hub_of(hub_process) as hub, hub.db.session() as db:
        current_only = agreement(
            db, recipient="fire_ems", dataset=city.cases.ref, columns={"zip": "clear"}
        )
    assert not current_only.allow_history
    with hub_process.as_role("steward", "health") as client:
        refused = client.post(
            f"/api/v1/agreements/{current_only.public_id}/share-profiles",
            json={"history": True},
        )
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["code"] == "history_not_allowed"
        shown = client.get(f"/api/v1/agreements/{city.agreement_id}")
        assert shown.json()["allow_history"] is True


def test_only_the_providers_steward_issues_profiles(hub_process: HubProcess, city: City) -> None:
    with hub_process.as_role("steward", "police") as client:
        response = client.post(f"/api/v1/agreements/{city.agreement_id}/share-profiles", json={})
    assert response.status_code in {403, 404}
    with hub_process.as_role("analyst", "fire_ems") as client:
        response = client.post(f"/api/v1/agreements/{city.agreement_id}/share-profiles", json={})
    assert response.status_code == 403


def test_every_call_and_file_is_audited_against_the_agreement(
    hub_process: HubProcess, profile: tuple[Path, dict[str, Any]], city: City
) -> None:
    path, created = profile
    delta_sharing.load_as_pandas(table_url(path, city), limit=5)
    database = Database(hub_process.database_url)
    with database.session() as db:
        records = [
            json.loads(entry.record)
            for entry in db.scalars(
                sa.select(AuditEntry).where(AuditEntry.action.like("sharing.%"))
            )
        ]
    database.dispose()
    mine = [
        r
        for r in records
        if r.get("actor", {}) and r["actor"].get("token") == created["profile"]["id"]
    ]
    actions = {r["action"] for r in mine}
    assert {"sharing.table_metadata", "sharing.query", "sharing.file"} <= actions
    for record in mine:
        if record["action"] in {"sharing.query", "sharing.file"}:
            assert record["resource"] in {city.cases.ref, city.sensors.ref}
            if record["resource"] == city.cases.ref:
                assert record["agreement"] == city.agreement_id
                assert record["purpose"] == PURPOSE
            else:
                assert "agreement" not in record
    assert created["profile_file"]["bearerToken"] not in json.dumps(records)


def _denials_after(proc: HubProcess, index: int) -> list[dict[str, Any]]:
    database = Database(proc.database_url)
    with database.session() as db:
        found = db.scalars(
            sa.select(AuditEntry.record)
            .where(AuditEntry.index > index, AuditEntry.outcome == "denied")
            .order_by(AuditEntry.index)
        )
        denials = [json.loads(record) for record in found]
    database.dispose()
    return denials


def _last_index(proc: HubProcess) -> int:
    database = Database(proc.database_url)
    with database.session() as db:
        last = db.scalar(sa.select(sa.func.max(AuditEntry.index)))
    database.dispose()
    return int(last if last is not None else -1)


def test_a_refused_file_download_is_one_denied_record(hub_process: HubProcess, city: City) -> None:
    created = steward_profile(hub_process, city.agreement_id, name="one-denial")
    profile_id = created["profile"]["id"]
    with hub_process.client(created["profile_file"]["bearerToken"]) as client:
        url = next(line["file"]["url"] for line in query_lines(client, city, {}) if "file" in line)
    with hub_process.as_role("steward", "health") as steward:
        assert steward.delete(f"/api/v1/sharing/profiles/{profile_id}").status_code == 200
    before = _last_index(hub_process)
    with httpx.Client(timeout=30) as anonymous:
        assert_protocol_error(anonymous.get(url), 401, "UNAUTHENTICATED")
    # Before, the profile check recorded an auth failure and the file route a second denial.
    (denial,) = _denials_after(hub_process, before)
    assert denial["action"] == "sharing.file"
    assert denial["reason"] == "revoked"
    assert denial["resource"] == f"share_profile:{profile_id}"
    assert denial["agreement"] == city.agreement_id
    before = _last_index(hub_process)
    with httpx.Client(timeout=30) as anonymous:
        tampered = url.replace("signature=", "signature=AA")
        assert_protocol_error(anonymous.get(tampered), 403, "PERMISSION_DENIED")
    (denial,) = _denials_after(hub_process, before)
    assert (denial["action"], denial["reason"]) == ("sharing.file", "invalid_signature")


def test_refused_queries_and_change_feeds_are_recorded(hub_process: HubProcess, city: City) -> None:
    created = steward_profile(hub_process, city.agreement_id, name="refused-reads")
    profile_id = created["profile"]["id"]
    table = f"/delta-sharing/shares/{city.agreement_id}/schemas/health/tables/{city.cases.slug}"
    before = _last_index(hub_process)
    with hub_process.client(created["profile_file"]["bearerToken"]) as client:
        assert client.post(table + "/query", json={"version": 1}).status_code == 403
        assert client.get(table + "/changes", params={"startingVersion": 1}).status_code == 403
        hidden = f"/delta-sharing/shares/{city.agreement_id}/schemas/health/tables/secret/query"
        assert client.post(hidden, json={}).status_code == 404
    # Each was rolled back with its call and left no record at all.
    denials = _denials_after(hub_process, before)
    assert [(d["action"], d["reason"], d.get("resource")) for d in denials] == [
        ("sharing.query", "history_not_shared", city.cases.ref),
        ("sharing.changes", "history_not_shared", city.cases.ref),
        ("sharing.query", "not_found", "health.secret"),
    ]
    assert all(d["actor"]["token"] == profile_id for d in denials)
    assert all(d["agreement"] == city.agreement_id for d in denials)
    assert all(d["purpose"] == PURPOSE for d in denials)


def test_cli_writes_a_private_profile_file_that_works(
    hub_process: HubProcess, city: City, tmp_path: Path
) -> None:
    out = tmp_path / "fire.share"
    env = hub_environment_for(hub_process)
    steward = hub_process.login("steward", "health").email
    done = subprocess.run(
        [sys.executable, "-m", "civicshare", "agreement", "share-profile", city.agreement_id,
         "--out", str(out), "--as", steward],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    profile = json.loads(out.read_text())
    assert profile["endpoint"] == hub_process.base_url + "/delta-sharing"
    assert len(delta_sharing.load_as_pandas(table_url(out, city))) == city.versions[-1].num_rows


def hub_environment_for(proc: HubProcess) -> dict[str, str]:
    from civicshare.config import Settings

    env = hub_environment(Settings(home=proc.home, database_url=proc.database_url))
    env["CIVICSHARE_PUBLIC_URL"] = proc.base_url
    return env


def test_revocation_stops_the_next_call_and_issued_urls(
    hub_process: HubProcess, tmp_path: Path
) -> None:
    city = build_city(hub_process, "revoked")
    created = steward_profile(hub_process, city.agreement_id, name="to-revoke")
    path = save_profile(tmp_path, created)
    url = table_url(path, city)
    assert len(delta_sharing.load_as_pandas(url)) == city.versions[-1].num_rows
    with hub_process.client(created["profile_file"]["bearerToken"]) as client:
        issued = [line["file"]["url"] for line in query_lines(client, city, {}) if "file" in line]
    with hub_of(hub_process) as hub, hub.db.session() as db:
        from civicshare.agency.models import Role

        policy.revoke_agreement(
            db=db, actor=person(db, "health", Role.steward), agreement_id=city.agreement_id
        )
    with pytest.raises(HTTPError) as caught:
        delta_sharing.load_as_pandas(url)
    assert caught.value.response.status_code == 403
    with pytest.raises(HTTPError) as caught:
        SharingClient(str(path)).list_all_tables()
    assert caught.value.response.status_code == 403
    with httpx.Client(timeout=30) as anonymous:
        for file_url in issued:
            assert_protocol_error(anonymous.get(file_url), 403, "PERMISSION_DENIED")
            assert anonymous.head(file_url).status_code == 403
    # Open data is not part of the agreement; a new profile for a revoked agreement is refused.
    with hub_process.as_role("steward", "health") as steward:
        again = steward.post(f"/api/v1/agreements/{city.agreement_id}/share-profiles", json={})
    assert again.status_code == 409


def test_aggregate_only_agreements_are_not_shareable(hub_process: HubProcess) -> None:
    from tests.policy.kit import agreement as make_agreement

    with hub_of(hub_process) as hub, hub.db.session() as db:
        made = make_agreement(
            db,
            recipient="police",
            dataset=build_city_dataset(hub_process),
            columns={"zip": "clear", "age": "clear"},
            aggregate_only=True,
        )
        agreement_id = made.public_id
    with hub_process.as_role("steward", "health") as steward:
        response = steward.post(f"/api/v1/agreements/{agreement_id}/share-profiles", json={})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "aggregate_only_not_shareable"
    assert "aggregate" in response.json()["error"]["message"]


def build_city_dataset(proc: HubProcess) -> str:
    return "health.e2e_cases"


def test_open_data_profiles_see_only_open_data(
    hub_process: HubProcess, city: City, tmp_path: Path
) -> None:
    path, _ = open_data_profile(hub_process, tmp_path)
    tables = SharingClient(str(path)).list_all_tables()
    assert {t.share for t in tables} == {"open_data"}
    assert city.cases.slug not in {t.name for t in tables}
    assert os.path.exists(path)
