"""Starting a real hub process (`civicshare serve`) for HTTP tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from civicshare.config import Settings
from civicshare.demo.service import DemoLogin, setup_city
from civicshare.hub import init_home


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def hub_environment(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env["CIVICSHARE_HOME"] = str(settings.home)
    env["CIVICSHARE_DATABASE_URL"] = settings.resolved_database_url
    env["CIVICSHARE_STORAGE_URL"] = settings.resolved_storage_url
    env.pop("CIVICSHARE_DEMO", None)
    # Test hubs notice closed agreement windows within a second, not the default half minute.
    env.setdefault("CIVICSHARE_AGREEMENT_EXPIRY_SWEEP_INTERVAL", "0.5")
    return env


@dataclass
class HubProcess:
    base_url: str
    logins: list[DemoLogin]
    home: Path
    database_url: str
    log_file: Path
    process: subprocess.Popen[bytes] = field(repr=False)

    def login(self, role: str, agency: str | None = None) -> DemoLogin:
        for login in self.logins:
            if login.role == role and (agency is None or login.agency == agency):
                return login
        raise LookupError(f"no demo login with role {role} in {agency}")

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30)

    def as_role(self, role: str, agency: str | None = None) -> httpx.Client:
        return self.client(self.login(role, agency).token)

    def log_text(self) -> str:
        return self.log_file.read_text(errors="replace")


@contextmanager
def start_hub_process(
    settings: Settings, *, people: int = 300, realdata: bool = False
) -> Iterator[HubProcess]:
    """A served hub with the demo logins and a small sample city.

    The real open-data files are left out unless ``realdata``: ingesting them takes seconds,
    which every module's hub would pay (tests/demo runs the full demo).
    """
    hub, _ = init_home(settings)
    # Only agencies and logins unless ``realdata``: the tests sharing this hub publish datasets
    # of their own (tests/demo runs the whole demo setup).
    logins = setup_city(hub, people=people, seed=7, datasets=realdata, load_realdata=realdata)
    hub.close()
    port = free_port()
    log_file = settings.home / "serve.log"
    with log_file.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "civicshare", "serve", "--port", str(port)],
            env=hub_environment(settings),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    proc = HubProcess(
        f"http://127.0.0.1:{port}",
        logins,
        settings.home,
        settings.resolved_database_url,
        log_file,
        process,
    )
    try:
        _wait_until_healthy(proc)
        yield proc
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_healthy(proc: HubProcess, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.process.poll() is not None:
            raise RuntimeError(f"hub exited with {proc.process.returncode}:\n{proc.log_text()}")
        try:
            if httpx.get(proc.base_url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"hub did not become healthy in {timeout}s:\n{proc.log_text()}")
