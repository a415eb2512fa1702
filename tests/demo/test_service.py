"""`civicshare demo --setup-only` as a user runs it: a real subprocess, then a real served hub."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import delta_sharing
import httpx
import pytest

from civicshare.catalog import service as catalog
from civicshare.config import Settings
from civicshare.demo.city import RECORD_SET_SPECS, generate_city
from civicshare.demo.realdata import REAL_DATASETS, RealDataset
from civicshare.demo.service import (
    CREDENTIALS_FILE,
    DEMO_AGENCIES,
    EMS_CASE_FEED,
    SHARE_PROFILE_FILE,
)
from civicshare.hub import Hub
from civicshare.permissions import CLI_ADMIN
from civicshare.policy import service as policy
from civicshare.storage import service as storage
from tests.conftest import BACKENDS, REALDATA, database_for
from tests.support.hubproc import free_port


def run_demo(settings: Settings, port: int, *extra: str) -> subprocess.CompletedProcess[str]:
    environment = dict(os.environ)
    environment.pop("CIVICSHARE_HOME", None)
    environment.update(
        CIVICSHARE_DATABASE_URL=settings.resolved_database_url,
        CIVICSHARE_REALDATA=str(REALDATA),
        COLUMNS="200",
    )
    command = ["demo", "--setup-only", "--home", str(settings.home), "--people", "500"]
    command += ["--port", str(port), *extra]
    return subprocess.run(
        [sys.executable, "-m", "civicshare", *command],
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )


@dataclass
class DemoRun:
    settings: Settings
    port: int  # the port the demo was set up for (its share profile points there)
    output: dict[str, Any]
    progress: str


@pytest.fixture(scope="module", params=BACKENDS)
def demo_run(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DemoRun]:
    """One `civicshare demo --setup-only --json` per backend, shared by this module's tests."""
    folder = tmp_path_factory.mktemp(f"demo-{request.param}")
    with database_for(request.param, folder) as url:
        settings = Settings(home=folder / "home", database_url=url)
        port = free_port()
        result = run_demo(settings, port, "--json")
        assert result.returncode == 0, result.stderr
        yield DemoRun(settings, port, json.loads(result.stdout), result.stderr)


def test_setup_writes_private_credentials_for_every_demo_role(demo_run: DemoRun) -> None:
    path = demo_run.settings.home / CREDENTIALS_FILE
    assert Path(demo_run.output["credentials_file"]) == path
    assert path.stat().st_mode & 0o777 == 0o600
    users = json.loads(path.read_text())["users"]
    assert all(set(user) == {"email", "password", "role", "agency", "token"} for user in users)
    assert all(user["password"] and user["token"] for user in users)
    roles = Counter(user["role"] for user in users)
    assert roles["admin"] == 1
    assert roles["auditor"] == 1
    for agency in DEMO_AGENCIES:
        staff = {user["role"] for user in users if user["agency"] == agency.slug}
        assert {"steward", "analyst"} <= staff, agency.slug
    assert demo_run.output["users"] == users


def test_setup_shows_its_progress(demo_run: DemoRun) -> None:
    assert "Creating the demo agencies and logins" in demo_run.progress
    assert "Generating the sample city: 500 residents" in demo_run.progress
    assert "Stored health.cases" in demo_run.progress
    assert "Ingested transport.air_quality_pm25 version 2" in demo_run.progress


def data_rows(path: Path) -> int:
    if path.suffix == ".json":
        return len(json.loads(path.read_text()))
    with path.open(newline="", encoding="utf-8") as handle:
        return sum(1 for _ in csv.reader(handle)) - 1


@pytest.fixture(scope="module")
def demo_hub(demo_run: DemoRun) -> Iterator[Hub]:
    hub = Hub(demo_run.settings)
    yield hub
    hub.close()


def test_the_person_level_records_are_stored_exactly_and_protected(demo_hub: Hub) -> None:
    city = generate_city(people=500, seed=2026)  # what `demo --people 500` generates
    with demo_hub.db.session() as db:
        for spec in RECORD_SET_SPECS:
            dataset = catalog.get_dataset(db=db, ref=spec.ref)
            assert dataset.visibility == spec.visibility
            assert [v.number for v in storage.list_versions(db=db, dataset=dataset)] == [1]
            schema = catalog.current_schema(db=db, dataset=dataset)
            classes = {field.classification for field in schema.fields}
            assert "personal" in classes, spec.ref
            assert "sensitive" in classes or spec.ref == "transport.reduced_fare_cards"
            stored = storage.read_version(db=db, hub=demo_hub, dataset=dataset).read_all()
            expected = city.record_set(spec.ref).table
            assert stored.num_rows == expected.num_rows > 0
            assert stored.to_pylist() == expected.to_pylist(), spec.ref


@pytest.mark.parametrize("real", REAL_DATASETS, ids=lambda real: real.ref)
def test_every_real_file_becomes_a_version_with_all_its_rows(
    demo_hub: Hub, real: RealDataset
) -> None:
    with demo_hub.db.session() as db:
        dataset = catalog.get_dataset(db=db, ref=real.ref)
        versions = storage.list_versions(db=db, dataset=dataset)
        assert dataset.visibility == real.visibility.value
        assert dataset.license == real.license
        if real.visibility == "public":
            assert catalog.current_schema(db=db, dataset=dataset).protected_fields() == []
    assert len(versions) == len(real.files)
    expected = 0
    for version, name in zip(versions, real.files, strict=True):
        expected += data_rows(REALDATA / name)
        assert version.row_count == expected, name


@pytest.fixture(scope="module")
def served(demo_run: DemoRun) -> Iterator[str]:
    settings = demo_run.settings
    environment = dict(os.environ)
    environment.update(
        CIVICSHARE_HOME=str(settings.home), CIVICSHARE_DATABASE_URL=settings.resolved_database_url
    )
    environment.pop("CIVICSHARE_DEMO", None)
    port = demo_run.port
    with (settings.home / "serve.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "civicshare", "serve", "--port", str(port)],
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert process.poll() is None, (settings.home / "serve.log").read_text()
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_the_public_sees_exactly_the_public_real_datasets(served: str) -> None:
    response = httpx.get(served + "/api/v1/datasets", params={"limit": 100}, timeout=30)
    assert response.status_code == 200, response.text
    refs = {item["ref"] for item in response.json()["items"]}
    assert refs == {real.ref for real in REAL_DATASETS if real.visibility == "public"}


def test_the_served_demo_hub_lists_the_five_agencies(served: str, demo_run: DemoRun) -> None:
    admin = next(user for user in demo_run.output["users"] if user["role"] == "admin")
    response = httpx.get(
        served + "/api/v1/agencies",
        headers={"Authorization": f"Bearer {admin['token']}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert {agency.slug for agency in DEMO_AGENCIES} <= {a["slug"] for a in response.json()}


def test_the_demo_agreements_are_active(demo_hub: Hub) -> None:
    with demo_hub.db.session() as db:
        agreements = {a.title: a for a in policy.list_agreements(db=db, actor=CLI_ADMIN)}
        assert len(agreements) == 3
        surveillance = agreements["Reportable disease counts by ZIP for EMS planning"]
        assert surveillance.aggregate_only
        assert surveillance.purpose == "public_health_surveillance"
        linkage = agreements["Housing applicants, pseudonymised, for the health support programme"]
        assert not linkage.aggregate_only
        feed = agreements[EMS_CASE_FEED]
        assert (feed.provider.slug, feed.recipient.slug) == ("health", "fire_ems")
        assert not feed.aggregate_only
        assert feed.purpose == "emergency_response"
        for agreement in agreements.values():
            assert agreement.state().value == "active"


def test_a_second_setup_reuses_everything(demo_run: DemoRun, demo_hub: Hub) -> None:
    path = demo_run.settings.home / CREDENTIALS_FILE
    before = path.read_text()
    profile_before = (demo_run.settings.home / SHARE_PROFILE_FILE).read_text()
    again = run_demo(demo_run.settings, demo_run.port, "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["users"] == demo_run.output["users"]
    assert path.read_text() == before
    assert (demo_run.settings.home / SHARE_PROFILE_FILE).read_text() == profile_before
    assert "Reusing the demo agencies and logins" in again.stderr
    assert "Reusing the sample city's person-level datasets" in again.stderr
    with demo_hub.db.session() as db:
        for spec in RECORD_SET_SPECS:
            dataset = catalog.get_dataset(db=db, ref=spec.ref)
            assert len(storage.list_versions(db=db, dataset=dataset)) == 1
        assert len(policy.list_agreements(db=db, actor=CLI_ADMIN)) == 3
    assert "Ingested" not in again.stderr
    with demo_hub.db.session() as db:
        for real in REAL_DATASETS:
            dataset = catalog.get_dataset(db=db, ref=real.ref)
            assert len(storage.list_versions(db=db, dataset=dataset)) == len(real.files)


def _token(demo_run: DemoRun, email: str) -> str:
    return str(next(u["token"] for u in demo_run.output["users"] if u["email"] == email))


def test_the_demo_share_profile_loads_the_masked_case_feed_and_open_data(
    demo_run: DemoRun, served: str
) -> None:
    path = Path(demo_run.output["share_profile_file"])
    assert path == demo_run.settings.home / SHARE_PROFILE_FILE
    assert path.stat().st_mode & 0o777 == 0o600
    profile = json.loads(path.read_text())
    assert profile["endpoint"] == f"{served}/delta-sharing"

    client = delta_sharing.SharingClient(str(path))
    tables = {(t.share, t.schema, t.name) for t in client.list_all_tables()}
    feed = next(share for share, schema, name in tables if (schema, name) == ("health", "cases"))
    public = {real.ref for real in REAL_DATASETS if real.visibility == "public"}
    assert {f"{schema}.{name}" for share, schema, name in tables if share == "open_data"} == public

    assert demo_run.output["shared_case_feed"] == f"{path}#{feed}.health.cases"
    frame = delta_sharing.load_as_pandas(demo_run.output["shared_case_feed"])
    # The same rows the governed query gives EMS under the same agreement and purpose.
    analyst = _token(demo_run, "analyst.fire_ems@demo-city.org")
    governed = httpx.post(
        served + "/api/v1/query",
        headers={"Authorization": f"Bearer {analyst}"},
        json={"sql": "SELECT * FROM health.cases", "purpose": "emergency_response"},
        timeout=60,
    )
    assert governed.status_code == 200, governed.text
    body = governed.json()
    columns = [column["name"] for column in body["columns"]]
    assert sorted(frame.columns) == sorted(columns)
    assert not {"given_name", "family_name", "address", "phone", "national_id"} & set(columns)
    assert len(frame) == len(body["rows"]) > 0

    def text(value: Any) -> str:
        # pandas widens an integer column with gaps (year_only birth years) to float.
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return str(value)

    def normalised(rows: list[list[Any]]) -> list[tuple[str, ...]]:
        return sorted(tuple(text(value) for value in row) for row in rows)

    shared_rows = frame[columns].astype(object).where(frame[columns].notna(), None)
    assert normalised(shared_rows.values.tolist()) == normalised(body["rows"])
    assert all(str(case).startswith("p_") for case in frame["case_id"])

    bikes = next(real.ref for real in REAL_DATASETS if real.visibility == "public")
    schema, name = bikes.split(".")
    opened = delta_sharing.load_as_pandas(f"{path}#open_data.{schema}.{name}")
    assert len(opened) > 0
