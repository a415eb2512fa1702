"""An HTTP client that behaves like a browser on the portal: cookies, CSRF tokens, forms."""

from __future__ import annotations

import re
from typing import Any

import httpx

from tests.support.hubproc import HubProcess

_CSRF = re.compile(r'(?:name="csrf_token" value="|"X-CSRF-Token": ")([^"]+)"')


class PortalClient:
    def __init__(self, proc: HubProcess) -> None:
        self.http = httpx.Client(
            base_url=proc.base_url, timeout=30, headers={"accept": "text/html"}
        )

    def __enter__(self) -> PortalClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.get(path, **kwargs)

    def csrf_token(self, path: str = "/login") -> str:
        match = _CSRF.search(self.get(path).text)
        assert match, f"no CSRF token on {path}"
        return match.group(1)

    def post_form(self, path: str, data: dict[str, str], *, form_page: str = "/") -> httpx.Response:
        token = self.csrf_token(form_page)
        return self.http.post(path, data={**data, "csrf_token": token})

    def log_in(self, email: str, password: str) -> httpx.Response:
        response = self.post_form(
            "/login", {"email": email, "password": password}, form_page="/login"
        )
        assert response.status_code == 303, response.text
        return response


def staff_client(hub: HubProcess, role: str, agency: str) -> PortalClient:
    """A portal client logged in as the demo login of that role in that agency."""
    client = PortalClient(hub)
    login = hub.login(role, agency)
    client.log_in(login.email, login.password)
    return client
