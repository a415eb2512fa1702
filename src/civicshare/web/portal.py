"""Mounting the portal on the hub's app: the pages at ``/`` and the vendored assets."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from civicshare.web.render import HERE


def mount_portal(app: FastAPI) -> None:
    from civicshare.web import catalog, pages
    from civicshare.web.render import NAV_SECTIONS

    NAV_SECTIONS[:] = [("/catalog", "Catalog", lambda actor: True)]

    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    for router in (pages.router, catalog.router):
        app.include_router(router)
