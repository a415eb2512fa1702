"""The DuckDB sandbox every governed query runs in.

One in-memory database per process and thread count (see ``sandbox``), opened with external
access disabled (no files, no HTTP, no extensions), extension autoload/autoinstall off and the
configuration locked, so no query can turn them back on. Each query gets its own connection
(a cursor): its Arrow sources are registered on that connection only, the watchdog thread
interrupts it at the deadline, and its output is read batch by batch up to the row cap.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any, TypeAlias

import duckdb
import pyarrow as pa

from civicshare.errors import BadRequest, CivicshareError

DEFAULT_TIMEOUT_SECONDS = 30.0
DEFAULT_MEMORY_LIMIT = "1GB"
DEFAULT_THREADS = 2
BATCH_ROWS = 65_536
_QUOTED = re.compile(r"'(?:[^']|'')*'")

# pa.Table or pa.RecordBatchReader (pyarrow ships no type information).
ArrowSource: TypeAlias = Any


class QueryTimeout(CivicshareError):
    """The query ran past its time budget and was interrupted."""

    status = 408
    default_code = "query_timeout"


class QueryResourceExceeded(CivicshareError):
    """The query needed more memory than the sandbox allows."""

    status = 422
    default_code = "query_too_large"


@dataclass
class Fetched:
    table: pa.Table
    truncated: bool


class Sandbox:
    def __init__(
        self, *, memory_limit: str = DEFAULT_MEMORY_LIMIT, threads: int = DEFAULT_THREADS
    ) -> None:
        self.database = duckdb.connect(
            ":memory:",
            config={
                "enable_external_access": False,
                "autoload_known_extensions": False,
                "autoinstall_known_extensions": False,
                "allow_community_extensions": False,
                "memory_limit": memory_limit,
                # No spilling: an in-memory DuckDB offloads to ``./.tmp`` (the server's working
                # folder) past its memory limit, which put decrypted rows on disk in the clear.
                # A query that needs more memory is refused instead (query_too_large).
                "temp_directory": "",
                "threads": threads,
                "lock_configuration": True,
            },
        )
        self._lock = threading.Lock()
        self._watchdog = Watchdog()

    @contextmanager
    def _connection(
        self, sources: Mapping[str, ArrowSource], timeout: float
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._lock:  # creating cursors is not thread-safe; running them is
            connection = self.database.cursor()
        token: int | None = None
        try:
            for name, source in sources.items():
                connection.register(name, source)
            token = self._watchdog.watch(connection, timeout)
            yield connection
        finally:
            if token is not None:
                self._watchdog.cancel(token)
            connection.close()

    def fetch(
        self,
        sql: str,
        sources: Mapping[str, ArrowSource],
        *,
        max_rows: int,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        reference_sql: str | None = None,
    ) -> Fetched:
        """Run ``sql`` and read at most ``max_rows`` rows (``truncated`` says if more existed).

        With ``reference_sql`` (an equivalent, plainer query), ``sql`` runs only if it binds to
        the same column types, and its columns take the reference's names; otherwise the
        reference runs. Binding reads no data.
        """
        with self._connection(sources, timeout) as connection, _translated_errors(timeout):
            sql, names = _bound(connection, sql, reference_sql)
            reader = connection.execute(sql).to_arrow_reader(BATCH_ROWS)
            batches: list[pa.RecordBatch] = []
            kept = 0
            truncated = False
            for batch in reader:
                if kept + batch.num_rows > max_rows:
                    batches.append(batch.slice(0, max_rows - kept))
                    truncated = True
                    break
                batches.append(batch)
                kept += batch.num_rows
            table = pa.Table.from_batches(batches, schema=reader.schema)
        if names is not None:
            table = table.rename_columns(names)
        return Fetched(table, truncated)

    def stream(
        self,
        sql: str,
        sources: Mapping[str, ArrowSource],
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> pa.RecordBatchReader:
        """Run ``sql`` and return all its rows as a reader (read eagerly within the deadline)."""
        fetched = self.fetch(sql, sources, max_rows=2**62, timeout=timeout)
        return fetched.table.to_reader()


class Watchdog:
    """One thread interrupting connections that pass their deadline.

    A ``threading.Timer`` per query started a thread per query, and starting a thread waits
    until it first runs, which on a busy machine cost milliseconds. Interrupts happen under
    the lock, and ``cancel`` takes it, so a connection is never interrupted after its query
    has been cancelled (and its connection closed or reused).

    The thread is woken only when a new deadline comes before the moment it will look next
    anyway: with the usual equal timeouts, a busy hub's queries do not each wake it (and hand
    it the GIL) just for it to go back to sleep.
    """

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._deadlines: dict[int, tuple[float, duckdb.DuckDBPyConnection]] = {}
        self._next_token = 0
        self._thread: threading.Thread | None = None
        self._wakes_at = math.inf  # when the thread looks next (infinity: when notified)

    def watch(self, connection: duckdb.DuckDBPyConnection, timeout: float) -> int:
        with self._condition:
            self._next_token += 1
            token = self._next_token
            deadline = time.monotonic() + timeout
            self._deadlines[token] = (deadline, connection)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="civicshare-query-watchdog", daemon=True
                )
                self._thread.start()
            if deadline < self._wakes_at:
                self._condition.notify()
            return token

    def cancel(self, token: int) -> None:
        with self._condition:
            self._deadlines.pop(token, None)

    def _run(self) -> None:
        with self._condition:
            while True:
                if not self._deadlines:
                    self._wakes_at = math.inf
                    self._condition.wait()
                    continue
                token, (deadline, connection) = min(
                    self._deadlines.items(), key=lambda item: item[1][0]
                )
                left = deadline - time.monotonic()
                if left > 0:
                    self._wakes_at = deadline
                    self._condition.wait(left)
                    continue
                del self._deadlines[token]
                with suppress(duckdb.Error):  # already finished: nothing to stop
                    connection.interrupt()


def _bound(
    connection: duckdb.DuckDBPyConnection, sql: str, reference_sql: str | None
) -> tuple[str, list[str] | None]:
    """The SQL to run and the output names to give it (see ``Sandbox.fetch``)."""
    if reference_sql is None:
        return sql, None
    reference = connection.sql(reference_sql)
    candidate = connection.sql(sql)
    if [str(t) for t in candidate.types] != [str(t) for t in reference.types]:
        return reference_sql, None
    return sql, list(reference.columns)


@contextmanager
def _translated_errors(timeout: float) -> Iterator[None]:
    """DuckDB's errors as hub errors; messages name no storage paths (there are none)."""
    try:
        yield
    except duckdb.InterruptException:
        raise QueryTimeout(
            f"the query ran longer than {timeout:g} s and was stopped",
            details={"timeout_seconds": timeout},
        ) from None
    except duckdb.OutOfMemoryException:
        raise QueryResourceExceeded("the query needs more memory than allowed") from None
    except (duckdb.PermissionException, duckdb.InvalidInputException) as exc:
        raise BadRequest(_first_line(exc), code="query_rejected") from None
    except duckdb.Error as exc:
        raise BadRequest(_first_line(exc), code="query_error") from None


def _first_line(exc: Exception) -> str:
    """DuckDB's first line with quoted literals blanked: they may be data values."""
    line = str(exc).splitlines()[0][:500] if str(exc) else type(exc).__name__
    return _QUOTED.sub("'…'", line)


_state: dict[str, Any] = {}
_state_lock = threading.Lock()


def sandbox(*, threads: int = DEFAULT_THREADS) -> Sandbox:
    """The process's sandbox with ``threads`` worker threads (each created on first use).

    The engine runs queries over small sources on a one-thread sandbox: DuckDB then works on
    the calling thread alone, instead of handing tasks to workers that a busy machine starts
    late (on the shared 2-core machine: median 3.4 ms vs 5.8 ms for a 200-row query). Both are
    opened with the same lockdown.
    """
    with _state_lock:
        key = f"sandbox-{threads}"
        if key not in _state:
            _state[key] = Sandbox(threads=threads)
        current: Sandbox = _state[key]
        return current
