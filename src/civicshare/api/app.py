"""FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import ModuleType
from typing import Any

import anyio
from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse

from civicshare import __version__
from civicshare.api.deps import HubDep
from civicshare.api.errors import install_error_handlers
from civicshare.api.middleware import BodySizeLimitMiddleware, RequestIdMiddleware
from civicshare.api.schemas import ERROR_RESPONSES
from civicshare.api.uploads import seal_uploads
from civicshare.hub import Hub

API_PREFIX = "/api/v1"
# Routes that receive uploads get the upload limit; every other body gets the small JSON limit.
UPLOAD_SUFFIXES = ("/ingest", "/upload")


def create_app(hub: Hub) -> FastAPI:
    """Build the HTTP app around an initialised hub."""
    app = FastAPI(
        title="civicshare",
        version=__version__,
        description="Secure data-sharing hub for public-sector agencies.",
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
        responses=ERROR_RESPONSES,
        lifespan=_background_work(hub),
    )
    app.state.hub = hub
    seal_uploads()
    install_error_handlers(app)
    app.add_middleware(BodySizeLimitMiddleware, limit_for=_body_limit(hub))
    app.add_middleware(RequestIdMiddleware)
    app.include_router(_health_router())
    for router in api_routers():
        app.include_router(router, prefix=API_PREFIX)
    for router in extra_routers():
        app.include_router(router)
    # The web portal: pages at `/` and its vendored assets at `/static` (none under /api/v1).
    from civicshare.web.portal import mount_portal

    mount_portal(app)
    return app


def _background_work(hub: Hub) -> Callable[[FastAPI], Any]:
    """What a serving hub process runs beside its requests (``civicshare.background``): the
    audit tree's integrator and the sweep that records agreements' expiries."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        from civicshare.audit.integrator import Integrator
        from civicshare.background import Periodic
        from civicshare.policy.service import sweep_expiries

        settings = hub.settings
        workers: list[Periodic] = [
            Periodic(
                "agreement-expiry",
                lambda: sweep_expiries(hub.db),
                interval=settings.agreement_expiry_sweep_interval,
            )
        ]
        if settings.audit_integrate_interval > 0:
            workers.append(Integrator(hub.db, interval=settings.audit_integrate_interval))
        for worker in workers:
            worker.start()
        try:
            yield
        finally:
            for worker in workers:
                worker.stopped.set()  # all asked at once, then each awaited
            for worker in workers:
                await anyio.to_thread.run_sync(worker.stop)

    return lifespan


def api_routers() -> list[APIRouter]:
    """Every domain's ``views.router`` (found automatically; see ``civicshare.models``)."""
    routers = []
    for module in _views_modules():
        router = getattr(module, "router", None)
        if isinstance(router, APIRouter):
            routers.append(router)
    return routers


def extra_routers() -> list[APIRouter]:
    """Every domain's ``views.extra_routers``: routes outside ``/api/v1``, carrying their own
    prefix (e.g. ``/delta-sharing``)."""
    routers: list[APIRouter] = []
    for module in _views_modules():
        extra = getattr(module, "extra_routers", ())
        routers.extend(router for router in extra if isinstance(router, APIRouter))
    return routers


def _views_modules() -> list[ModuleType]:
    import importlib

    from civicshare.models import domain_packages

    modules = []
    for name in domain_packages():
        try:
            modules.append(importlib.import_module(f"civicshare.{name}.views"))
        except ModuleNotFoundError as exc:
            if exc.name != f"civicshare.{name}.views":
                raise
    return modules


def _body_limit(hub: Hub) -> Callable[[str], int]:
    settings = hub.settings

    def limit_for(path: str) -> int:
        if path.endswith(UPLOAD_SUFFIXES):
            return settings.max_upload_bytes
        return settings.max_body_bytes

    return limit_for


def _health_router() -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/healthz")
    def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @router.get("/readyz", response_model=None)
    def readyz(hub: HubDep) -> dict[str, str] | JSONResponse:
        """Readiness: the metadata database answers."""
        try:
            hub.db.ping()
        except Exception as exc:  # any driver error means "not ready"
            return JSONResponse(
                {
                    "error": {
                        "code": "not_ready",
                        "message": "database unreachable",
                        "details": type(exc).__name__,
                    }
                },
                status_code=503,
            )
        return {"status": "ready", "database": hub.db.backend}

    return router
