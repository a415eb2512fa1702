"""Tokens and passwords are never stored or logged in clear."""

from __future__ import annotations

import httpx
import sqlalchemy as sa

from civicshare.db import Database
from tests.support.hubproc import HubProcess


def _database_dump(url: str) -> bytes:
    """Every value in every table, as bytes, whatever the backend."""
    database = Database(url)
    chunks: list[bytes] = []
    with database.engine.connect() as conn:
        for table in sa.inspect(conn).get_table_names():
            for row in conn.execute(sa.text(f'SELECT * FROM "{table}"')):
                chunks.extend(
                    value if isinstance(value, bytes) else str(value).encode() for value in row
                )
    database.dispose()
    return b"\n".join(chunks)


def test_tokens_and_passwords_never_stored_or_logged_in_clear(hub_process: HubProcess) -> None:
    with hub_process.as_role("analyst", "health") as client:
        fresh = client.post("/api/v1/tokens", json={"name": "x"}).json()["token"]
    # Use every token, including a failed attempt with a wrong one.
    bogus = fresh[:-4] + "AAAA"
    for token in [fresh, bogus, *(login.token for login in hub_process.logins)]:
        httpx.get(
            hub_process.base_url + "/api/v1/users/me",
            headers={"Authorization": f"Bearer {token}"},
            params={"token": token},
        )  # even a token in the query string stays out of logs
    secrets = [fresh, bogus]
    secrets += [login.token for login in hub_process.logins]
    secrets += [login.password for login in hub_process.logins]

    dump = _database_dump(hub_process.database_url)
    log = hub_process.log_text()
    for secret in secrets:
        assert secret.encode() not in dump
        assert secret not in log
    # Files under the home other than the credentials file the demo writes for its users.
    for path in hub_process.home.rglob("*"):
        if path.is_file() and path.name != "demo-credentials.json":
            data = path.read_bytes()
            for secret in secrets:
                assert secret.encode() not in data, path
    assert "GET /api/v1/users/me 200" in log  # the access log is there, just without secrets


def test_credentials_and_master_key_files_are_private(hub_process: HubProcess) -> None:
    mode = (hub_process.home / "demo-credentials.json").stat().st_mode & 0o777
    assert mode == 0o600
    assert (hub_process.home / "master.key").stat().st_mode & 0o777 == 0o600
