"""Growing the audit log's Merkle tree in the background, so signing never waits for it.

Appenders only store each record and its leaf hash; the tree's interior nodes are hashed later
(``service.integrate``). Left to checkpoint and proof requests, that work piles up: a hub that
appends a million records a day and is asked for a checkpoint once a day would hash them all
inside that one request, holding SQLite's write turn for seconds while every action waits. A
hub process that serves HTTP runs one ``Integrator``: a thread that, every ``interval`` seconds,
integrates what was appended since its last pass, in transactions of at most ``batch`` records
(on SQLite each holds the write turn, so writers wait at most that long). A checkpoint is then
signable within about one interval of the last append, at any sustained rate the tree keeps up
with. Several hub processes each run one; the integration lock makes them take turns.
"""

from __future__ import annotations

from civicshare.audit import service
from civicshare.background import Periodic
from civicshare.db import Database

DEFAULT_INTERVAL = 0.5  # seconds between passes
BATCH = 5_000  # records per transaction (SQLite: ~10-30 ms of the write turn)


class Integrator(Periodic):
    """A daemon thread that keeps the tree caught up with the log; ``stop`` ends it."""

    def __init__(
        self, database: Database, *, interval: float = DEFAULT_INTERVAL, batch: int = BATCH
    ) -> None:
        if batch <= 0:
            raise ValueError("the integrator needs a positive batch")
        super().__init__("audit-integrator", self.catch_up, interval=interval, first_after=interval)
        self.database = database
        self.batch = batch

    def catch_up(self) -> int:
        """Integrate every record appended before this call; returns the tree's size.

        Looks first in a read-only snapshot, so a pass over an unchanged log never takes the
        write turn. A damaged log raises ``audit_log_damaged`` (logged by ``integrate`` with its
        index); proofs and checkpoints report it to their callers.
        """
        with self.database.read_session() as db:
            appended = service.appended_size(db)
            integrated = service.integrated_size(db)
        while integrated < appended and not self.stopped.is_set():
            with self.database.session() as db:
                integrated = service.integrate(db, limit=self.batch)
        return integrated
