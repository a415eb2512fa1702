"""The portal skeleton over real HTTP: home, login, CSRF, sessions, logout, error pages."""

from __future__ import annotations

import httpx

from tests.support.hubproc import HubProcess
from tests.web.portal_client import PortalClient


def _set_cookies(response: httpx.Response) -> dict[str, str]:
    return {value.split("=", 1)[0]: value for value in response.headers.get_list("set-cookie")}


def test_home_explains_the_hub_without_login(hub_process: HubProcess) -> None:
    with PortalClient(hub_process) as portal:
        response = portal.get("/")
    assert response.status_code == 200
    assert "text/html" in response.headers["content-type"]
    assert "Share public-sector data safely" in response.text
    assert 'href="/open-data"' in response.text
    assert 'href="/login"' in response.text
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"
    csrf_cookie = _set_cookies(response)["cs_csrf"]
    assert "HttpOnly" in csrf_cookie
    assert "SameSite=strict" in csrf_cookie


def test_login_sets_a_secure_session_and_logout_ends_it(hub_process: HubProcess) -> None:
    login = hub_process.login("steward", "health")
    with PortalClient(hub_process) as portal:
        response = portal.log_in(login.email, login.password)
        assert response.headers["location"] == "/"
        session_cookie = _set_cookies(response)["cs_session"]
        assert "HttpOnly" in session_cookie
        assert "SameSite=lax" in session_cookie
        assert "Secure" not in session_cookie  # plain HTTP on loopback
        home = portal.get("/")
        assert login.email in home.text
        assert home.headers["cache-control"] == "no-store"
        stolen = portal.http.cookies["cs_session"]
        assert portal.post_form("/logout", {}).status_code == 303
        assert login.email not in portal.get("/").text
    # The old cookie value is dead on the server, not just forgotten by this browser.
    with httpx.Client(base_url=hub_process.base_url, cookies={"cs_session": stolen}) as replay:
        assert login.email not in replay.get("/").text


def test_session_cookie_is_secure_behind_tls(hub_process: HubProcess) -> None:
    login = hub_process.login("analyst", "health")
    with PortalClient(hub_process) as portal:
        token = portal.csrf_token("/login")
        response = portal.http.post(
            "/login",
            data={"email": login.email, "password": login.password, "csrf_token": token},
            headers={"x-forwarded-proto": "https"},
        )
    assert response.status_code == 303
    assert "Secure" in _set_cookies(response)["cs_session"]


def test_empty_login_shows_errors_next_to_fields_and_keeps_the_email(
    hub_process: HubProcess,
) -> None:
    with PortalClient(hub_process) as portal:
        response = portal.post_form("/login", {"email": "someone@x.org", "password": ""})
    assert response.status_code == 422
    assert 'id="f-password-error"' in response.text
    assert "Enter your password." in response.text
    assert 'value="someone@x.org"' in response.text
    assert 'aria-invalid="true"' in response.text


def test_wrong_password_is_refused_without_echoing_it(hub_process: HubProcess) -> None:
    login = hub_process.login("steward", "police")
    with PortalClient(hub_process) as portal:
        response = portal.post_form(
            "/login", {"email": login.email, "password": "my-wrong-secret-123"}
        )
    assert response.status_code == 401
    assert "wrong email or password" in response.text
    assert f'value="{login.email}"' in response.text
    assert "my-wrong-secret-123" not in response.text
    assert "cs_session" not in _set_cookies(response)


def test_repeated_failures_lock_the_account(hub_process: HubProcess) -> None:
    login = hub_process.login("analyst", "transport")
    with PortalClient(hub_process) as portal:
        for _ in range(5):
            portal.post_form("/login", {"email": login.email, "password": "wrong-password-1"})
        response = portal.post_form("/login", {"email": login.email, "password": login.password})
    assert response.status_code == 401
    assert "too many failed logins" in response.text


def test_forms_without_a_valid_csrf_token_are_refused(hub_process: HubProcess) -> None:
    login = hub_process.login("steward", "housing")
    credentials = {"email": login.email, "password": login.password}
    with PortalClient(hub_process) as portal:
        token = portal.csrf_token("/login")
        missing = portal.http.post("/login", data=credentials)
        forged = portal.http.post("/login", data={**credentials, "csrf_token": "0" * 64})
        cross_site = portal.http.post(
            "/login",
            data={**credentials, "csrf_token": token},
            headers={"origin": "https://evil.example"},
        )
    # Another browser's token does not fit this browser's cookie either.
    with PortalClient(hub_process) as other:
        other.get("/")
        borrowed = other.http.post("/login", data={**credentials, "csrf_token": token})
    for response in (missing, forged, cross_site, borrowed):
        assert response.status_code == 403
        assert "cs_session" not in _set_cookies(response)
        assert "text/html" in response.headers["content-type"]


def test_login_never_redirects_off_site(hub_process: HubProcess) -> None:
    login = hub_process.login("steward", "fire_ems")
    with PortalClient(hub_process) as portal:
        token = portal.csrf_token("/login")
        response = portal.http.post(
            "/login",
            data={
                "email": login.email,
                "password": login.password,
                "next": "//evil.example/x",
                "csrf_token": token,
            },
        )
    assert response.headers["location"] == "/"


def test_unknown_pages_are_html_for_browsers_and_json_for_the_api(
    hub_process: HubProcess,
) -> None:
    with PortalClient(hub_process) as portal:
        page = portal.get("/no-such-page")
        api = portal.get("/api/v1/no-such-thing", headers={"accept": "application/json"})
    assert page.status_code == 404
    assert "text/html" in page.headers["content-type"]
    assert "there is no page at this address" in page.text
    assert api.status_code == 404
    assert api.json()["error"]["code"] == "not_found"


def test_static_assets_are_served_from_the_package(hub_process: HubProcess) -> None:
    with PortalClient(hub_process) as portal:
        for path in (
            "/static/css/portal.css",
            "/static/vendor/htmx.min.js",
            "/static/vendor/vega.min.js",
            "/static/vendor/vega-lite.min.js",
            "/static/vendor/vega-embed.min.js",
            "/static/vendor/vega-interpreter.js",
        ):
            assert portal.get(path).status_code == 200, path
