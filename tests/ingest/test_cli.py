"""`civicshare dataset infer|ingest|ingests` as a user runs them (real subprocesses)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy.orm import Session

from civicshare.config import Settings
from civicshare.hub import Hub
from tests.conftest import REALDATA
from tests.ingest.test_service import CASES_SCHEMA, planted_csv
from tests.support.datasets import make_dataset


def civicshare(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    environment = dict(os.environ)
    environment.update(
        CIVICSHARE_HOME=str(settings.home),
        CIVICSHARE_DATABASE_URL=settings.resolved_database_url,
        COLUMNS="200",
    )
    return subprocess.run(
        [sys.executable, "-m", "civicshare", *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_infer_prints_a_reviewable_schema(settings: Settings) -> None:
    path = REALDATA / "sf-fire-ems-calls/Fire_Department_Calls_for_Service.csv"
    result = civicshare(settings, "dataset", "infer", str(path), "--json")
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    fields = {f["name"]: f for f in schema["fields"]}
    assert fields["received_dttm"]["format"] == "%m/%d/%Y %I:%M:%S %p"
    assert fields["neighborhood_district"]["title"] == "Neighborhood  District"
    readable = civicshare(settings, "dataset", "infer", str(path))
    assert readable.returncode == 0, readable.stderr
    assert "neighborhood_district" in readable.stdout


def test_infer_needs_at_least_one_sampled_row(settings: Settings) -> None:
    path = REALDATA / "population-datapackage/data/population.csv"
    for rows in ("0", "-5"):
        result = civicshare(settings, "dataset", "infer", str(path), "--sample-rows", rows)
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        assert "--sample-rows" in result.stderr


def test_ingest_json_report_summary_and_quarantine(
    hub: Hub, db: Session, settings: Settings, tmp_path: Path
) -> None:
    make_dataset(db, "health.cases", CASES_SCHEMA)
    db.commit()
    path = planted_csv(tmp_path)
    result = civicshare(
        settings,
        "dataset",
        "ingest",
        "health.cases",
        str(path),
        "--max-error-rate",
        "0.1",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert {
        "version",
        "rows_read",
        "rows_accepted",
        "rows_rejected",
        "errors_by_rule",
        "rejections",
    } <= set(report)
    assert (report["version"], report["rows_rejected"]) == (1, 4)
    assert set(report["errors_by_rule"]) == {
        "type",
        "format",
        "required",
        "unique",
        "enum",
        "pattern",
        "minimum",
        "maximum",
        "minLength",
        "maxLength",
        "primaryKey",
    }
    summary = civicshare(
        settings,
        "dataset",
        "ingest",
        "health.cases",
        str(path),
        "--mode",
        "replace",
        "--max-error-rate",
        "0.1",
    )
    assert summary.returncode == 0, summary.stderr
    assert "stored" in summary.stdout
    assert "errors by rule" in summary.stdout
    shown = civicshare(settings, "dataset", "ingests", "health.cases", report["id"], "--json")
    assert shown.returncode == 0, shown.stderr
    assert len(json.loads(shown.stdout)["quarantine"]) == 4


def test_rejected_ingest_exits_non_zero(
    hub: Hub, db: Session, settings: Settings, tmp_path: Path
) -> None:
    make_dataset(db, "health.cases", CASES_SCHEMA)
    db.commit()
    result = civicshare(
        settings, "dataset", "ingest", "health.cases", str(planted_csv(tmp_path, good=5))
    )
    assert result.returncode == 2
    assert "rejected" in result.stdout
