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

import logging
import threading

from civicshare.audit import service
from civicshare.db import Database
from civicshare.errors import CivicshareError

log = logging.getLogger("civicshare.audit")

DEFAULT_INTERVAL = 0.5  # seconds between passes
BATCH = 5_000  # records per transaction (SQLite: ~10-30 ms of the write turn)
MAX_BACKOFF = 60.0  # seconds between passes while integration keeps failing


class Integrator:
    """A daemon thread that keeps the tree caught up with the log; ``stop`` ends it."""

    def __init__(
        self, database: Database, *, interval: float = DEFAULT_INTERVAL, batch: int = BATCH
    ) -> None:
        if interval <= 0 or batch <= 0:
            raise ValueError("the integrator needs a positive interval and batch")
        self.database = database
        self.interval = interval
        self.batch = batch
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="audit-integrator", daemon=True)

    def start(self) -> Integrator:
        self.thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Ask the thread to stop and wait for it (it finishes the transaction it is in)."""
        self.stopped.set()
        if self.thread.is_alive() and self.thread is not threading.current_thread():
            self.thread.join(timeout)

    def catch_up(self) -> int:
        """Integrate every record appended before this call; returns the tree's size.

        Looks first in a read-only snapshot, so a pass over an unchanged log never takes the
        write turn.
        """
        with self.database.read_session() as db:
            appended = service.appended_size(db)
            integrated = service.integrated_size(db)
        while integrated < appended and not self.stopped.is_set():
            with self.database.session() as db:
                integrated = service.integrate(db, limit=self.batch)
        return integrated

    def _run(self) -> None:
        wait = self.interval
        while not self.stopped.wait(wait):
            try:
                self.catch_up()
            except CivicshareError as exc:
                # A damaged log (``audit_log_damaged``), already logged by ``integrate`` with
                # its index. Retried slowly: proofs and checkpoints report it to their callers.
                wait = min(MAX_BACKOFF, wait * 2)
                log.debug("background integration stopped at %s", exc.code)
            except Exception as exc:
                # The exception's class only: database errors quote statements and parameters.
                wait = min(MAX_BACKOFF, wait * 2)
                log.warning("background audit integration failed (%s)", type(exc).__name__)
            else:
                wait = self.interval
