"""Work a serving hub process repeats in the background, beside its requests.

Each piece of work runs in a daemon thread of its own, every ``interval`` seconds, in units of
work of its own (so it commits or rolls back like any action). A pass that fails is logged by
the class of its exception only (database errors quote statements and parameters) and retried
later, more slowly while it keeps failing; the thread outlives it. ``stop`` ends the thread
after the pass it is in.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from civicshare.errors import CivicshareError

log = logging.getLogger("civicshare.background")

MAX_BACKOFF = 60.0  # seconds between passes while they keep failing


class Periodic:
    """Runs ``work()`` every ``interval`` seconds in a daemon thread named ``name``."""

    def __init__(
        self, name: str, work: Callable[[], object], *, interval: float, first_after: float = 0
    ) -> None:
        if interval <= 0:
            raise ValueError(f"{name} needs a positive interval")
        self.name = name
        self.work = work
        self.interval = interval
        self.first_after = first_after
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> Periodic:
        self.thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Ask the thread to stop and wait for it (it finishes the pass it is in)."""
        self.stopped.set()
        if self.thread.is_alive() and self.thread is not threading.current_thread():
            self.thread.join(timeout)

    def _run(self) -> None:
        wait = self.first_after
        while not self.stopped.wait(wait):
            try:
                self.work()
            except CivicshareError as exc:
                # An expected refusal (a damaged audit log, say), logged where it was raised.
                wait = min(MAX_BACKOFF, max(wait, self.interval) * 2)
                log.debug("%s: pass stopped at %s", self.name, exc.code)
            except Exception as exc:  # the thread must outlive a bad pass
                wait = min(MAX_BACKOFF, max(wait, self.interval) * 2)
                log.warning("%s: pass failed (%s)", self.name, type(exc).__name__)
            else:
                wait = self.interval
