"""`civicshare dataset|storage|key` as a user runs them: real subprocesses, a real hub home."""

from __future__ import annotations

import json
from pathlib import Path

from civicshare.config import Settings
from tests.cli.test_cli import civicshare, ok_json
from tests.conftest import REALDATA
from tests.support.datasets import PEOPLE_SCHEMA

PACKAGE = REALDATA / "population-datapackage" / "datapackage.json"


def fails(settings: Settings, *args: str) -> str:
    result = civicshare(settings, *args)
    assert result.returncode == 1, result.stdout
    assert "Traceback" not in result.stderr
    return result.stderr


def test_register_from_the_population_data_package(settings: Settings) -> None:
    ok_json(settings, "init")
    ok_json(settings, "agency", "create", "stats", "--title", "Statistics Office")
    created = ok_json(
        settings, "dataset", "create", "stats.population", "--schema", str(PACKAGE),
        "--visibility", "public", "--theme", "demographics",
    )  # fmt: skip
    assert isinstance(created, dict)
    assert created["title"].startswith("Population figures")
    assert created["keywords"] == ["Population", "World", "Time series"]
    assert [f["name"] for f in created["table_schema"]["fields"]] == [
        "Country Name", "Country Code", "Year", "Value",
    ]  # fmt: skip
    shown = ok_json(settings, "dataset", "show", "stats.population")
    assert isinstance(shown, dict)
    assert shown["visibility"] == "public"
    listed = ok_json(settings, "dataset", "list", "--q", "population")
    assert isinstance(listed, dict)
    assert [d["ref"] for d in listed["items"]] == ["stats.population"]
    assert ok_json(settings, "dataset", "versions", "stats.population") == []
    text = civicshare(settings, "dataset", "show", "stats.population").stdout
    assert "Year: year [internal]" in text


def test_bad_input_gets_one_clear_line_and_changes_nothing(
    settings: Settings, tmp_path: Path
) -> None:
    ok_json(settings, "init")
    ok_json(settings, "agency", "create", "health", "--title", "Health")
    broken = tmp_path / "broken.json"
    broken.write_text('{"fields": [')
    invalid = tmp_path / "invalid.json"
    invalid.write_text(json.dumps({"fields": [{"name": "a", "type": "text"}]}))
    good = tmp_path / "people.json"
    good.write_text(json.dumps(PEOPLE_SCHEMA))
    assert "bad_dataset_ref" in fails(
        settings, "dataset", "create", "Health.x", "--schema", str(good)
    )
    assert "agency_not_found" in fails(
        settings, "dataset", "create", "nowhere.x", "--schema", str(good)
    )
    assert "schema_file_malformed" in fails(
        settings, "dataset", "create", "health.x", "--schema", str(broken)
    )
    assert "invalid_schema" in fails(
        settings, "dataset", "create", "health.x", "--schema", str(invalid)
    )
    assert "schema_file_unreadable" in fails(
        settings, "dataset", "create", "health.x", "--schema", str(tmp_path / "missing.json")
    )
    listed = ok_json(settings, "dataset", "list")
    assert isinstance(listed, dict)
    assert listed["total"] == 0


def test_schema_purge_gc_and_rotation_commands(settings: Settings, tmp_path: Path) -> None:
    ok_json(settings, "init")
    ok_json(settings, "agency", "create", "health", "--title", "Health")
    people = tmp_path / "people.json"
    people.write_text(json.dumps(PEOPLE_SCHEMA))
    ok_json(settings, "dataset", "create", "health.cases", "--schema", str(people))
    narrower = tmp_path / "narrower.json"
    narrower.write_text(json.dumps({**PEOPLE_SCHEMA, "fields": PEOPLE_SCHEMA["fields"][:-1]}))
    refused = fails(settings, "dataset", "schema", "health.cases", "--schema", str(narrower))
    assert "breaking_schema_change" in refused
    versions = ok_json(
        settings, "dataset", "schema", "health.cases", "--schema", str(narrower), "--breaking"
    )
    assert isinstance(versions, list)
    assert [v["number"] for v in versions] == [1, 2]
    assert "confirmation_required" in fails(settings, "dataset", "purge", "health.cases")
    purged = ok_json(settings, "dataset", "purge", "health.cases", "--yes")
    assert isinstance(purged, dict)
    assert purged["purged_at"]
    report = ok_json(settings, "storage", "gc")
    assert isinstance(report, dict)
    assert report["applied"] is False
    rotation = ok_json(settings, "key", "rotate", "--agency", "health")
    assert isinstance(rotation, dict)
    assert rotation["version"] == 1


def test_a_hidden_dataset_looks_missing_to_the_cli(settings: Settings, tmp_path: Path) -> None:
    ok_json(settings, "init")
    for agency in ("health", "police"):
        ok_json(settings, "agency", "create", agency, "--title", agency.title())
    steward = "steward@police.example.org"
    ok_json(settings, "user", "create", steward, "--role", "steward", "--agency", "police")
    people = tmp_path / "people.json"
    people.write_text(json.dumps(PEOPLE_SCHEMA))
    ok_json(settings, "dataset", "create", "health.cases", "--schema", str(people))
    rows = tmp_path / "rows.csv"
    rows.write_text("person_id\n1\n")
    for command in (["purge"], ["ingest"], ["ingests"]):
        extra = {"purge": ["--yes"], "ingest": [str(rows)], "ingests": []}[command[0]]
        hidden = fails(settings, "dataset", *command, "health.cases", *extra, "--as", steward)
        missing = fails(settings, "dataset", *command, "health.nothing", *extra, "--as", steward)
        assert "dataset_not_found" in hidden, command
        assert hidden.replace("health.cases", "health.nothing") == missing, command
    shown = ok_json(settings, "dataset", "show", "health.cases")
    assert isinstance(shown, dict)
    assert shown["purged_at"] is None
