"""Running the hub over HTTP with uvicorn."""

from __future__ import annotations

import logging

import uvicorn

from civicshare.config import Settings
from civicshare.hub import Hub


def build_hub_for_serving(settings: Settings) -> Hub:
    """Fail closed on configuration, then bring the schema up to date."""
    hub = Hub(settings)
    hub.check_ready_to_serve()
    hub.db.upgrade()
    return hub


def run_server(settings: Settings, *, host: str, port: int) -> None:
    from civicshare.api.app import create_app

    hub = build_hub_for_serving(settings)
    logging.getLogger("civicshare").setLevel(logging.INFO)
    app = create_app(hub)
    # uvicorn's own access log prints query strings, where signed URLs carry secrets.
    uvicorn.run(app, host=host, port=port, access_log=False, log_level="info")


def app_from_environment() -> object:
    """ASGI factory for `uvicorn --factory civicshare.server:app_from_environment`."""
    from civicshare.api.app import create_app
    from civicshare.config import load_settings

    return create_app(build_hub_for_serving(load_settings()))
