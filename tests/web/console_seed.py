"""The sample city's person-level datasets and the demo agreements, on a running test hub.

DESIGN.md scenarios 1 and 2 through the console need ``health.cases`` shared with fire_ems
(aggregate-only, public_health_surveillance) and ``housing.applications`` shared with health
(pseudonymised, service_delivery): exactly what ``demo.service.setup_city`` builds, here for a
small city so the module's hub is quick to prepare.
"""

from __future__ import annotations

from civicshare.config import Settings
from civicshare.demo.service import setup_city
from civicshare.hub import init_home
from tests.support.hubproc import HubProcess

PEOPLE = 1500  # enough cases that some cells are released and some suppressed


def seed_city(proc: HubProcess) -> None:
    """Store the city's datasets and agreements through the services, next to the served hub."""
    hub, _ = init_home(Settings(home=proc.home, database_url=proc.database_url))
    try:
        setup_city(hub, people=PEOPLE, seed=7, datasets=True, load_realdata=False)
    finally:
        hub.close()
