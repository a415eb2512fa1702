"""Portal pages that only show data read a snapshot: a writer holding the write turn meanwhile
(SQLite has one) does not hold them up, for a logged-in person as for the public."""

from __future__ import annotations

import sqlalchemy as sa

from civicshare.catalog.models import Dataset
from civicshare.db import Database
from tests.support.concurrency import write_held
from tests.support.hubproc import HubProcess
from tests.web.portal_client import PortalClient, staff_client
from tests.web.seed import seed_catalog

PAGES = (
    "/catalog",
    "/catalog/health.flu_cases",
    "/agreements",
    "/agreements/new?dataset=health.flu_cases",
    "/my-agency",
    "/my-agency/flu_cases",
    "/console",
)


def test_portal_pages_do_not_wait_for_a_writer(hub_process: HubProcess) -> None:
    seed_catalog(hub_process)
    database = Database(hub_process.database_url)
    untouched = sa.update(Dataset).where(Dataset.id == -1).values(title="x")
    try:
        # Logging in has just recorded the session's last use: views within a minute only read.
        with (
            staff_client(hub_process, "steward", "health") as steward,
            PortalClient(hub_process) as public,
            write_held(database, lambda db: db.execute(untouched)),
        ):
            for path in PAGES:
                # A bounded wait, so a regression fails instead of hanging.
                page = steward.get(path, timeout=15)
                assert page.status_code == 200, (path, page.status_code)
            assert public.get("/open-data", timeout=15).status_code == 200
    finally:
        database.dispose()
