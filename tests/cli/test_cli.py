"""The CLI as a user runs it: real subprocesses against a real hub home."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

from civicshare.config import Settings
from civicshare.db import alembic_config


def civicshare(
    settings: Settings, *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = dict(os.environ)
    environment.update(
        CIVICSHARE_HOME=str(settings.home),
        CIVICSHARE_DATABASE_URL=settings.resolved_database_url,
        COLUMNS="200",
    )
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "civicshare", *args],
        env=environment,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def ok_json(settings: Settings, *args: str, stdin: str | None = None) -> object:
    result = civicshare(settings, *args, "--json", stdin=stdin)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_init_creates_a_private_home_with_a_master_key(settings: Settings) -> None:
    first = ok_json(settings, "init")
    assert isinstance(first, dict)
    assert first["master_key_created"] is True
    key = Path(str(first["master_key_file"]))
    assert key.stat().st_mode & 0o777 == 0o600
    assert settings.home.stat().st_mode & 0o777 == 0o700
    again = ok_json(settings, "init")
    assert isinstance(again, dict)
    assert again["master_key_created"] is False, "init never overwrites an existing key"
    migrated = ok_json(settings, "db", "upgrade")
    assert isinstance(migrated, dict)
    script = ScriptDirectory.from_config(alembic_config())
    # A head that another branch depends on (catalog c001 under storage s001) is not recorded
    # itself once the dependent revision is applied: compare what the recorded ones imply.
    applied = {r.revision for r in script.iterate_revisions(migrated["revisions"], "base")}
    assert set(script.get_heads()) <= applied


def test_agency_user_token_lifecycle(settings: Settings) -> None:
    ok_json(settings, "init")
    agency = ok_json(settings, "agency", "create", "sf_health", "--title", "SF Health")
    assert isinstance(agency, dict)
    assert agency["slug"] == "sf_health"
    listed = ok_json(settings, "agency", "list")
    assert [a["slug"] for a in listed] == ["sf_health"]  # type: ignore[union-attr,index]

    user = ok_json(
        settings,
        "user",
        "create",
        "Ana@SF.gov",
        "--role",
        "analyst",
        "--agency",
        "sf_health",
        "--password-stdin",
        stdin="correct horse battery staple\n",
    )
    assert isinstance(user, dict)
    assert user["email"] == "ana@sf.gov"

    token = ok_json(settings, "token", "create", "--user", "ana@sf.gov", "--expires-in-days", "7")
    assert isinstance(token, dict)
    assert str(token["token"]).startswith("cs_")
    listed_tokens = ok_json(settings, "token", "list", "--user", "ana@sf.gov")
    assert isinstance(listed_tokens, list)
    assert [t["id"] for t in listed_tokens] == [token["id"]]
    assert "token" not in listed_tokens[0], "secrets are shown once, at creation"

    revoked = ok_json(settings, "token", "revoke", str(token["id"]))
    assert isinstance(revoked, dict)
    assert revoked["revoked_at"] is not None


def test_acting_as_a_user_applies_their_permissions(settings: Settings) -> None:
    ok_json(settings, "init")
    ok_json(settings, "agency", "create", "police", "--title", "Police")
    ok_json(
        settings,
        "user",
        "create",
        "an@police.example.org",
        "--role",
        "analyst",
        "--agency",
        "police",
    )
    result = civicshare(
        settings,
        "user",
        "create",
        "x@police.example.org",
        "--role",
        "analyst",
        "--agency",
        "police",
        "--as",
        "an@police.example.org",
    )
    assert result.returncode == 1
    assert "may not user.create" in result.stderr
    assert "permission_denied" in result.stderr
    # Their own token they may create; the record shows the administrator acting as them.
    token = ok_json(settings, "token", "create", "--as", "an@police.example.org")
    assert isinstance(token, dict)
    assert token["user"] == "an@police.example.org"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["agency", "create", "Bad-Slug", "--title", "X"], "lowercase SQL identifier"),
        (["agency", "create", "ok_slug", "--title", "X", "--parent", "nope"], "no agency 'nope'"),
        (["user", "create", "not-an-email", "--role", "analyst"], "email"),
        (["user", "create", "a@b.example.org", "--role", "analyst"], "must belong to an agency"),
        (["token", "revoke", "tok_missing"], "no token 'tok_missing'"),
        (["user", "list", "--as", "ghost@nowhere.example.org"], "no user"),
    ],
)
def test_user_mistakes_print_one_line_and_exit_nonzero(
    settings: Settings, args: list[str], message: str
) -> None:
    ok_json(settings, "init")
    result = civicshare(settings, *args)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_duplicate_agency_is_refused_and_changes_nothing(settings: Settings) -> None:
    ok_json(settings, "init")
    ok_json(settings, "agency", "create", "housing", "--title", "Housing")
    result = civicshare(settings, "agency", "create", "housing", "--title", "Other")
    assert result.returncode == 1
    assert "agency_exists" in result.stderr
    listed = ok_json(settings, "agency", "list")
    assert [(a["slug"], a["title"]) for a in listed] == [("housing", "Housing")]  # type: ignore[union-attr,index]


def test_commands_without_a_home_say_how_to_create_one(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "nowhere")
    result = civicshare(settings, "agency", "list", env={"CIVICSHARE_DATABASE_URL": ""})
    assert result.returncode == 1
    assert "civicshare init" in result.stderr


def test_serve_refuses_to_start_without_a_master_key(settings: Settings) -> None:
    ok_json(settings, "init")
    settings.resolved_master_key_file.unlink()
    result = civicshare(settings, "serve", "--port", "1")
    assert result.returncode == 1
    assert "no master key" in result.stderr
    assert "civicshare init" in result.stderr


def test_serve_refuses_an_unreadable_master_key(settings: Settings, tmp_path: Path) -> None:
    ok_json(settings, "init")
    bogus = tmp_path / "bogus.key"
    bogus.write_text("not a key\n")
    result = civicshare(
        settings, "serve", "--port", "1", env={"CIVICSHARE_MASTER_KEY_FILE": str(bogus)}
    )
    assert result.returncode == 1
    assert "not a civicshare master key file" in result.stderr


def test_files_the_hub_writes_are_private(settings: Settings) -> None:
    ok_json(settings, "init")
    ok_json(settings, "agency", "create", "parks", "--title", "Parks")
    for path in settings.home.rglob("*"):
        assert path.stat().st_mode & 0o077 == 0, f"{path} is readable by others"
