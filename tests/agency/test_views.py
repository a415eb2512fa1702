"""The foundation's HTTP API, against a real hub process on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import sqlalchemy as sa

from civicshare.agency.models import ApiToken
from civicshare.db import Database
from civicshare.demo.service import DEMO_AGENCIES
from tests.support.hubproc import HubProcess


def assert_error(response: object, status: int, code: str) -> dict[str, object]:
    import httpx

    assert isinstance(response, httpx.Response)
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert body["error"]["request_id"] == response.headers["x-request-id"]
    error: dict[str, object] = body["error"]
    return error


def test_health_and_readiness(hub_process: HubProcess) -> None:
    with hub_process.client() as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz").json()
        assert ready["status"] == "ready"
        assert ready["database"] in {"sqlite", "postgresql"}


def test_admin_token_lists_the_five_demo_agencies(hub_process: HubProcess) -> None:
    with hub_process.as_role("admin") as client:
        response = client.get("/api/v1/agencies")
    assert response.status_code == 200
    assert {a.slug for a in DEMO_AGENCIES} <= {a["slug"] for a in response.json()}


def test_missing_and_unknown_tokens_are_401(hub_process: HubProcess) -> None:
    with hub_process.client() as client:
        assert_error(client.get("/api/v1/agencies"), 401, "unauthenticated")
    with hub_process.client("cs_not-a-real-token") as client:
        response = client.get("/api/v1/agencies")
        assert_error(response, 401, "invalid_token")
        assert response.headers["www-authenticate"] == "Bearer"


def test_duplicate_agency_slug_is_409_and_changes_nothing(hub_process: HubProcess) -> None:
    with hub_process.as_role("admin") as client:
        before = client.get("/api/v1/agencies/health").json()
        response = client.post("/api/v1/agencies", json={"slug": "health", "title": "Other"})
        assert_error(response, 409, "agency_exists")
        assert client.get("/api/v1/agencies/health").json() == before


def test_slug_that_is_not_an_sql_identifier_is_422_naming_the_rule(
    hub_process: HubProcess,
) -> None:
    with hub_process.as_role("admin") as client:
        for slug in ["Health", "1city", "sf-health", "a" * 64, "drop table;"]:
            response = client.post("/api/v1/agencies", json={"slug": slug, "title": "X"})
            error = assert_error(response, 422, "validation_error")
            assert "lowercase SQL identifier" in str(error["message"])
            assert slug not in str(error), "the rejected input is not echoed back"
        slugs = {a["slug"] for a in client.get("/api/v1/agencies").json()}
    assert not slugs & {"Health", "1city", "sf-health", "a" * 64, "drop table;"}


def test_admin_creates_agency_and_steward_creates_agency_user(hub_process: HubProcess) -> None:
    with hub_process.as_role("admin") as admin:
        created = admin.post(
            "/api/v1/agencies",
            json={"slug": "parks", "title": "Parks", "level": "regional", "parent": "transport"},
        )
        assert created.status_code == 201, created.text
        assert created.json()["parent"] == "transport"
    with hub_process.as_role("steward", "housing") as steward:
        user = {
            "email": "caseworker@housing.example.org",
            "display_name": "C",
            "role": "analyst",
            "agency": "housing",
        }
        assert steward.post("/api/v1/users", json=user).status_code == 201
        other = dict(user, email="x@police.example.org", agency="police")
        assert_error(steward.post("/api/v1/users", json=other), 403, "permission_denied")


def test_analyst_creating_a_user_is_403(hub_process: HubProcess) -> None:
    with hub_process.as_role("analyst", "health") as client:
        response = client.post(
            "/api/v1/users",
            json={
                "email": "new@health.example.org",
                "display_name": "New",
                "role": "analyst",
                "agency": "health",
            },
        )
        assert_error(response, 403, "permission_denied")
    with hub_process.as_role("admin") as admin:
        emails = {u["email"] for u in admin.get("/api/v1/users").json()}
    assert "new@health.example.org" not in emails


def test_revoked_token_is_401(hub_process: HubProcess) -> None:
    with hub_process.as_role("analyst", "police") as client:
        created = client.post("/api/v1/tokens", json={"name": "laptop"}).json()
        secret = created["token"]
    with hub_process.client(secret) as client:
        assert client.get("/api/v1/users/me").json()["email"].startswith("analyst.police")
        assert client.delete(f"/api/v1/tokens/{created['id']}").status_code == 200
        assert_error(client.get("/api/v1/users/me"), 401, "invalid_token")


def test_expired_token_is_401(hub_process: HubProcess) -> None:
    with hub_process.as_role("analyst", "transport") as client:
        created = client.post("/api/v1/tokens", json={"expires_in_days": 1}).json()
    database = Database(hub_process.database_url)
    with database.session() as db:
        # Time passes: the token's expiry moves into the past.
        db.execute(
            sa.update(ApiToken)
            .where(ApiToken.public_id == created["id"])
            .values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
        )
    database.dispose()
    with hub_process.client(created["token"]) as client:
        error = assert_error(client.get("/api/v1/users/me"), 401, "invalid_token")
        assert "expired" in str(error["message"])


def test_oversize_body_is_413(hub_process: HubProcess) -> None:
    with hub_process.as_role("admin") as client:
        huge = {"slug": "big", "title": "x" * (2 * 1024 * 1024)}
        assert_error(client.post("/api/v1/agencies", json=huge), 413, "payload_too_large")
        # Also when the client streams without declaring a length.
        chunks = (b"x" * 65536 for _ in range(40))
        response = client.post(
            "/api/v1/agencies", content=chunks, headers={"content-type": "application/json"}
        )
        assert_error(response, 413, "payload_too_large")
        assert client.get("/api/v1/agencies/big").status_code == 404


def test_scoped_token_cannot_leave_its_scope(hub_process: HubProcess) -> None:
    with hub_process.as_role("admin") as admin:
        created = admin.post("/api/v1/tokens", json={"scopes": ["agency.read"]}).json()
    with hub_process.client(created["token"]) as scoped:
        assert scoped.get("/api/v1/agencies").status_code == 200
        response = scoped.post("/api/v1/agencies", json={"slug": "scoped", "title": "S"})
        assert_error(response, 403, "permission_denied")


def test_unknown_route_uses_the_error_shape(hub_process: HubProcess) -> None:
    with hub_process.client() as client:
        assert_error(client.get("/api/v1/nothing-here"), 404, "not_found")


def test_openapi_declares_the_error_model(hub_process: HubProcess) -> None:
    with hub_process.client() as client:
        spec = client.get("/api/v1/openapi.json").json()
    assert "ErrorResponse" in spec["components"]["schemas"]
    post = spec["paths"]["/api/v1/agencies"]["post"]
    for status in ("401", "403", "409", "413", "422"):
        assert status in post["responses"]
    assert "HTTPBearer" in spec["components"]["securitySchemes"]


def test_readiness_is_503_when_the_database_is_unreachable(tmp_path: Path) -> None:
    import asyncio

    import httpx

    from civicshare.api.app import create_app
    from civicshare.config import Settings
    from civicshare.hub import Hub

    # A PostgreSQL URL on a port where nothing listens: the process is alive but not ready.
    settings = Settings(
        home=tmp_path, database_url="postgresql+psycopg://nobody@127.0.0.1:9/none?connect_timeout=1"
    )
    transport = httpx.ASGITransport(app=create_app(Hub(settings)))

    async def probe() -> tuple[httpx.Response, httpx.Response]:
        async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
            return await client.get("/healthz"), await client.get("/readyz")

    alive, response = asyncio.run(probe())
    assert alive.status_code == 200
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "not_ready"
    assert "nobody" not in response.text
