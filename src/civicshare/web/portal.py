"""Mounting the portal on the hub's app: the pages at ``/`` and the vendored assets."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from civicshare.permissions import Action, Actor, is_allowed
from civicshare.web.render import HERE


def _may_read_audit(actor: Actor) -> bool:
    return is_allowed(actor, Action.audit_read_all) or is_allowed(
        actor, Action.audit_read_agency, agency_id=actor.agency_id
    )


def mount_portal(app: FastAPI) -> None:
    from civicshare.web import agency, agreements, audit, catalog, console, pages
    from civicshare.web.render import NAV_SECTIONS

    NAV_SECTIONS[:] = [
        ("/catalog", "Catalog", lambda actor: True),
        ("/agreements", "Agreements", lambda actor: actor.agency_id is not None),
        ("/audit", "Audit", _may_read_audit),
        ("/console", "Query console", lambda actor: is_allowed(actor, Action.query_run)),
        ("/my-agency", "My agency", lambda actor: actor.agency_id is not None),
    ]

    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    for router in (pages.router, catalog.router, agreements.router, audit.router, console.router):
        app.include_router(router)
    app.include_router(agency.router)
    app.add_middleware(agency.UploadLimitPages)
