"""The Delta Sharing endpoint over HTTP, with the official client, against a real hub process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from delta_sharing import SharingClient
from requests.exceptions import HTTPError

from tests.support.hubproc import HubProcess


def assert_protocol_error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"errorCode", "message"}
    assert body["errorCode"] == code
    assert body["message"]
    message: str = body["message"]
    return message


def open_data_profile(hub_process: HubProcess, folder: Path) -> tuple[Path, dict[str, Any]]:
    with hub_process.as_role("analyst", "housing") as client:
        response = client.post("/api/v1/sharing/profiles/open-data", json={"name": "laptop"})
    assert response.status_code == 201, response.text
    created = response.json()
    path = folder / "open.share"
    path.write_text(json.dumps(created["profile_file"]))
    return path, created


def recipient(hub_process: HubProcess, token: str) -> httpx.Client:
    return hub_process.client(token)


def test_profile_file_works_with_the_official_client(
    hub_process: HubProcess, tmp_path: Path
) -> None:
    path, created = open_data_profile(hub_process, tmp_path)
    profile_file = created["profile_file"]
    assert profile_file["shareCredentialsVersion"] == 1
    assert profile_file["endpoint"] == hub_process.base_url + "/delta-sharing"
    assert profile_file["bearerToken"].startswith("csds_")
    assert profile_file["expirationTime"].endswith("Z")
    assert created["profile"]["share"] == "open_data"
    client = SharingClient(str(path))
    assert [share.name for share in client.list_shares()] == ["open_data"]


def test_the_token_is_stored_only_as_a_hash(hub_process: HubProcess, tmp_path: Path) -> None:
    _path, created = open_data_profile(hub_process, tmp_path)
    import sqlalchemy as sa

    engine = sa.create_engine(hub_process.database_url)
    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT * FROM share_profile")).mappings().all()
    engine.dispose()
    secret = created["profile_file"]["bearerToken"]
    assert stored
    assert all(secret not in json.dumps(dict(row), default=str) for row in stored)


def test_unknown_and_missing_tokens_are_401_in_the_protocol_shape(hub_process: HubProcess) -> None:
    with hub_process.client("csds_not-a-token") as client:
        response = client.get("/delta-sharing/shares")
        assert_protocol_error(response, 401, "UNAUTHENTICATED")
        assert response.headers["www-authenticate"] == "Bearer"
    with hub_process.client() as client:
        assert_protocol_error(client.get("/delta-sharing/shares"), 401, "UNAUTHENTICATED")


def test_hub_api_tokens_are_not_share_profiles(hub_process: HubProcess) -> None:
    with hub_process.as_role("admin") as client:
        assert_protocol_error(client.get("/delta-sharing/shares"), 401, "UNAUTHENTICATED")


def test_revoking_a_profile_stops_the_very_next_call(
    hub_process: HubProcess, tmp_path: Path
) -> None:
    path, created = open_data_profile(hub_process, tmp_path)
    client = SharingClient(str(path))
    assert client.list_shares()
    with hub_process.as_role("analyst", "housing") as owner:
        revoked = owner.delete(f"/api/v1/sharing/profiles/{created['profile']['id']}")
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"]
    with pytest.raises(HTTPError) as caught:
        client.list_shares()
    assert caught.value.response.status_code == 401
    token = created["profile_file"]["bearerToken"]
    with recipient(hub_process, token) as raw:
        message = assert_protocol_error(raw.get("/delta-sharing/shares"), 401, "UNAUTHENTICATED")
    assert "revoked" in message


def test_someone_elses_profile_cannot_be_revoked(hub_process: HubProcess, tmp_path: Path) -> None:
    _path, created = open_data_profile(hub_process, tmp_path)
    with hub_process.as_role("analyst", "police") as other:
        response = other.delete(f"/api/v1/sharing/profiles/{created['profile']['id']}")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"


def test_paging_and_bad_page_tokens(hub_process: HubProcess, tmp_path: Path) -> None:
    _path, created = open_data_profile(hub_process, tmp_path)
    with recipient(hub_process, created["profile_file"]["bearerToken"]) as client:
        empty = client.get("/delta-sharing/shares", params={"maxResults": 0}).json()
        assert empty["items"] == []
        following = client.get(
            "/delta-sharing/shares", params={"pageToken": empty["nextPageToken"]}
        ).json()
        assert following == {"items": [{"name": "open_data"}]}
        for bad in ["garbage", empty["nextPageToken"][:-2] + "xx"]:
            response = client.get("/delta-sharing/shares", params={"pageToken": bad})
            assert_protocol_error(response, 400, "INVALID_PARAMETER_VALUE")
        response = client.get("/delta-sharing/shares", params={"maxResults": -1})
        assert_protocol_error(response, 400, "INVALID_PARAMETER_VALUE")
        response = client.get("/delta-sharing/shares", params={"maxResults": "ten"})
        assert_protocol_error(response, 400, "MALFORMED_REQUEST")


def test_unknown_shares_and_paths_are_404_in_the_protocol_shape(
    hub_process: HubProcess, tmp_path: Path
) -> None:
    _path, created = open_data_profile(hub_process, tmp_path)
    with recipient(hub_process, created["profile_file"]["bearerToken"]) as client:
        assert client.get("/delta-sharing/shares/OPEN_DATA").json() == {
            "share": {"name": "open_data"}
        }
        response = client.get("/delta-sharing/shares/agreement_1")
        assert_protocol_error(response, 404, "RESOURCE_DOES_NOT_EXIST")
        response = client.get("/delta-sharing/nothing/here")
        assert_protocol_error(response, 404, "RESOURCE_DOES_NOT_EXIST")
