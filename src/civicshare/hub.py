"""The running hub: settings plus the long-lived resources built from them.

API, portal and CLI each build one ``Hub`` and hand its parts to service functions.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from civicshare import crypto
from civicshare.config import Settings
from civicshare.db import Database

if TYPE_CHECKING:
    from civicshare.storage.segments import SegmentStore


class Hub:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @cached_property
    def db(self) -> Database:
        return Database(self.settings.resolved_database_url)

    @cached_property
    def keys(self) -> crypto.KeyProvider:
        """The key provider; fails closed when the master key is missing or unreadable."""
        return crypto.LocalKeyProvider.from_file(self.settings.require_master_key())

    @cached_property
    def storage(self) -> SegmentStore:
        """Where encrypted segments live (``pyarrow.fs``: a local folder or S3)."""
        from civicshare.storage.segments import SegmentStore

        return SegmentStore(self.settings.resolved_storage_url)

    def check_ready_to_serve(self) -> None:
        """Refuse to start on a mis-configured home (demo mode creates what is missing)."""
        if self.settings.demo:
            ensure_master_key(self.settings.resolved_master_key_file)
        self.settings.require_master_key()
        _ = self.keys

    def close(self) -> None:
        if "db" in self.__dict__:
            self.db.dispose()


def ensure_master_key(path: Path) -> bool:
    return crypto.create_master_key(path)


def init_home(settings: Settings) -> tuple[Hub, bool]:
    """Create the home folder, a master key (if none), the database schema and the audit log's
    checkpoint signing key (if none). Idempotent."""
    from civicshare.audit.service import ensure_signing_key

    settings.home.mkdir(parents=True, exist_ok=True)
    settings.home.chmod(0o700)
    created = ensure_master_key(settings.resolved_master_key_file)
    hub = Hub(settings)
    hub.db.upgrade()
    with hub.db.session() as db:
        ensure_signing_key(db, hub)
    return hub, created
