"""`civicshare agreement|objection|query` as a user runs them, against a real hub home."""

from __future__ import annotations

import json

from civicshare.agency.models import Role
from civicshare.config import Settings
from civicshare.hub import Hub
from tests.cli.test_cli import civicshare, ok_json
from tests.policy.kit import cases_table, publish
from tests.support.datasets import person


def test_request_approve_query_revoke_from_the_command_line(settings: Settings, hub: Hub) -> None:
    with hub.db.session() as db:
        publish(db, hub, "health.cases", cases_table(60))
        fire = person(db, "fire_ems", Role.analyst).email
        steward = person(db, "health", Role.steward).email
    requested = ok_json(
        settings,
        "agreement", "request",
        "--dataset", "health.cases", "--recipient", "fire_ems",
        "--purpose", "public_health_surveillance", "--legal-basis", "Health code 12",
        "--column", "zip=clear", "--column", "resident_id=show_last(2)",
        "--row-filter", "age >= 18",
        "--as", fire,
    )  # fmt: skip
    assert isinstance(requested, dict)
    agreement_id = requested["id"]
    assert requested["state"] == "requested"
    approved = ok_json(settings, "agreement", "approve", agreement_id, "--as", steward)
    assert isinstance(approved, dict)
    assert approved["state"] == "active"
    sql = "SELECT resident_id, zip FROM health.cases ORDER BY resident_id LIMIT 2"
    ran = civicshare(
        settings, "query", sql, "--purpose", "public_health_surveillance", "--as", fire
    )
    assert ran.returncode == 0, ran.stderr
    body = json.loads(ran.stdout)
    assert [c["name"] for c in body["columns"]] == ["resident_id", "zip"]
    assert all(row[0].startswith("*****") for row in body["rows"])
    explained = civicshare(
        settings, "query", sql, "--purpose", "public_health_surveillance", "--explain", "--as", fire
    )
    assert json.loads(explained.stdout)["datasets"][0]["row_filter"] == "age >= 18"
    exported = civicshare(settings, "agreement", "export", agreement_id, "--as", fire)
    assert json.loads(exported.stdout)["@type"] == "Agreement"
    ok_json(settings, "agreement", "revoke", agreement_id, "--as", steward)
    refused = civicshare(
        settings, "query", sql, "--purpose", "public_health_surveillance", "--as", fire
    )
    assert refused.returncode == 1
    assert "agreement_revoked" in refused.stderr
    listed = ok_json(settings, "agreement", "list", "--as", fire)
    assert isinstance(listed, list)
    assert [a["state"] for a in listed] == ["revoked"]


def test_objection_identifier_comes_from_stdin_and_is_never_printed(
    settings: Settings, hub: Hub
) -> None:
    with hub.db.session() as db:
        steward = person(db, "health", Role.steward).email
    made = ok_json(
        settings,
        "objection", "register", "--agency", "health", "--field", "resident_id",
        "--purpose", "research", "--as", steward,
        stdin="R-00042\n",
    )  # fmt: skip
    assert isinstance(made, dict)
    assert made["purposes"] == ["research"]
    listed = civicshare(
        settings, "objection", "list", "--agency", "health", "--as", steward, "--json"
    )
    assert "R-00042" not in listed.stdout
    assert json.loads(listed.stdout)[0]["id"] == made["id"]
