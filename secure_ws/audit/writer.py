"""The audit writer: one append on the event loop, everything else in a flusher thread.

Each audit call (:class:`AuditWriter`'s four typed methods) stores one
:data:`~secure_ws.audit.records.Entry` in an in-process buffer and returns: no
formatting, no lock, no database round trip on the handshake. A background thread wakes
every ``AUDIT_FLUSH_INTERVAL`` seconds (sooner once ``AUDIT_BATCH_SIZE`` entries wait),
drains the buffer and feeds the sinks ``AUDIT_SINKS`` names:

* ``log``: one JSON line per record on the ``secure_ws.audit`` logger
  (:class:`~secure_ws.audit.sinks.LogSink`);
* ``metrics``: the Prometheus counters (:class:`~secure_ws.audit.sinks.MetricsSink`);
* ``database``: the rows, through :class:`~secure_ws.audit.batcher.AuditBatcher`
  (coalescing, aggregation, bounds, loss counting) and
  :class:`~secure_ws.audit.database.DatabaseSink` (writes, survives outages).

The buffer holds at most ``AUDIT_BUFFER_SIZE`` entries between two flushes; past that an
entry is not kept but counted (an ``unrecorded`` row, ``secure_ws_audit_records_lost_total``).

:meth:`AuditWriter.flush` writes everything now; :meth:`AuditWriter.stop` flushes and stops
the thread. Both are safe to call from any thread but the event loop's (the ORM refuses it).
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from functools import lru_cache

from django.db import connections

from secure_ws.audit.batcher import AuditBatcher
from secure_ws.audit.database import DatabaseSink
from secure_ws.audit.records import Entry, close_counters, to_pending
from secure_ws.audit.sinks import active_sinks, record_sinks
from secure_ws.audit.storage import audit_alias
from secure_ws.codes import Reason
from secure_ws.conf import get_settings
from secure_ws.connection import ConnectionInfo

logger = logging.getLogger(__name__)


class AuditWriter:
    """Buffers audit calls and feeds them to the sinks from a background thread.

    Args:
        autostart: start the background flusher on the first record (tests pass ``False``
            and call :meth:`flush` themselves).
        sinks: the sinks to feed; ``None`` reads ``AUDIT_SINKS`` (and ``AUDIT_ENABLED``) at
            each flush, see :func:`secure_ws.audit.sinks.active_sinks`.
    """

    def __init__(self, *, autostart: bool = True, sinks: Sequence[str] | None = None) -> None:
        self._entries: deque[Entry] = deque()
        # Guards the batcher: the flusher and a caller whose entry found no room share it.
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._batcher = AuditBatcher()
        self._database = DatabaseSink()
        self._sinks = tuple(sinks) if sinks is not None else None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._autostart = autostart

    # -- the audit calls (event loop side: one append, never blocks) ------------------

    def connection_refused(self, info: ConnectionInfo, reason: Reason) -> None:
        """Record a refused connection attempt."""
        self._push(("refuse", time.time(), info, reason.value))

    def connection_opened(self, info: ConnectionInfo) -> None:
        """Record an accepted connection; its close completes the same row."""
        self._push(("open", time.time(), info, None))

    def security_event(self, info: ConnectionInfo, kind: str, detail: str) -> None:
        """Record a violation inside a connection (``kind`` is an error or reason code)."""
        self._push(("event", time.time(), info, (kind, detail)))

    def connection_closed(self, info: ConnectionInfo, close_code: int) -> None:
        """Record the close of an accepted connection with its final traffic counters."""
        arguments = (close_code, close_counters(info), info.close_reason, info.events_dropped)
        self._push(("close", time.time(), info, arguments))

    def _push(self, entry: Entry) -> None:
        entries = self._entries
        settings = get_settings()
        if len(entries) >= settings.AUDIT_BUFFER_SIZE:
            self._overflow(entry)
            return
        entries.append(entry)
        if len(entries) >= settings.AUDIT_BATCH_SIZE and not self._wake.is_set():
            self._wake.set()
        if self._thread is None and self._autostart:
            self._start()

    def _overflow(self, entry: Entry) -> None:
        # Rare (the flusher fell a whole buffer behind): counted, never silently dropped.
        with self._lock:
            self._batcher.lose(entry[0], entry[2].connection_id)

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._run, name="secure_ws-audit-writer", daemon=True
            )
            self._thread.start()

    @property
    def depth(self) -> int:
        """Number of records waiting: not yet drained, or waiting for the database."""
        return len(self._entries) + self._batcher.depth

    # -- flushing (flusher thread, or the caller of flush) ----------------------------

    def flush(self, timeout: float | None = None, *, final: bool = True) -> bool:
        """Feed every buffered record to the sinks now; ``False`` if some stayed unwritten.

        Records the database did not take stay buffered, in order, for the next flush.

        Args:
            timeout: give up (return ``False``) after about this many seconds: waiting for
                a flush already running, or before starting another database batch.
                ``None`` waits as long as it takes.
            final: write every record. The background flusher passes ``False``: an open
                younger than two flush intervals whose close has not arrived stays
                buffered, so that a short connection becomes one INSERT.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._flush_lock.acquire(timeout=-1 if timeout is None else timeout):
            return False
        try:
            return self._flush(final=final, deadline=deadline)
        finally:
            self._flush_lock.release()

    def _flush(self, *, final: bool, deadline: float | None) -> bool:
        names = self._sinks if self._sinks is not None else active_sinks()
        count = len(self._entries)
        drained = [self._entries.popleft() for _ in range(count)]
        sinks = record_sinks(names)
        for sink in sinks:
            try:
                sink.emit(drained)
            except Exception:
                logger.exception("audit sink %s failed", type(sink).__name__)
        ok = True
        if "database" in names:
            # Formatted before taking the lock: an overflowing caller on the loop waits on it.
            records = [to_pending(entry) for entry in drained]
            with self._lock:
                for record in records:
                    self._batcher.add(record)
            ok = self._database.write(self._batcher, self._lock, final=final, deadline=deadline)
        else:
            with self._lock:
                # Nothing links a close to its open when no row is written.
                self._batcher.lost.opens.clear()
        with self._lock:
            lost = self._batcher.take_loss_report()
        if lost:
            logger.warning(
                "audit buffer full: %d record(s) counted but not kept (%s)",
                sum(lost.values()),
                ", ".join(f"{kind}={n}" for kind, n in sorted(lost.items())),
            )
        failures = self._database.take_failures()
        for sink in sinks:
            try:
                sink.report(depth=self.depth, lost=lost, write_failures=failures)
            except Exception:
                logger.exception("audit sink %s failed", type(sink).__name__)
        return ok

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(get_settings().AUDIT_FLUSH_INTERVAL)
            self._wake.clear()
            try:
                self.flush(final=self._stop.is_set())
            except Exception:
                logger.exception("audit flusher failed; retrying")
            finally:
                # Hold no idle connection: a database restart or a test database drop
                # must not trip over this thread.
                connections[audit_alias()].close()

    def stop(self, timeout: float = 10.0) -> bool:
        """Flush what is buffered and stop the background flusher; ``False`` if records stayed.

        The flusher starts again with the next audit call. Never call it on the event loop.
        """
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=timeout)
        self._thread = None
        if self.depth or self._batcher.has_counters:
            # No flusher ran (autostart off), or it gave up: write the rest here.
            return self.flush(timeout)
        return True


@lru_cache(maxsize=1)
def get_writer() -> AuditWriter:
    """Return the process-wide audit writer; it is flushed and stopped at interpreter exit."""
    writer = AuditWriter()
    atexit.register(writer.stop)
    return writer


def stop_writer(timeout: float = 10.0) -> bool:
    """Flush and stop the process's writer if one was created; ``True`` if nothing stayed.

    For shutdown hooks and test teardown: unlike ``get_writer().stop()`` it does not create
    a writer that nobody used.
    """
    if not get_writer.cache_info().currsize:
        return True
    return get_writer().stop(timeout)
