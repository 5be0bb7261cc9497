"""The database sink: writes the batcher's batches, and keeps them when the database fails.

Runs in the flusher thread (or whoever calls :meth:`AuditWriter.flush`). What each batch
turns into is :mod:`secure_ws.audit.storage`'s job; this module decides what a failure
means:

* the database is unreachable (``OperationalError``, ``InterfaceError``, anything
  unexpected): the batch and everything after it go back to the front of the batcher, in
  order, and are written when the database returns;
* the database refuses the data itself (another ``DatabaseError``): the batch is written
  record by record, so one poison record cannot block the buffer forever; only the records
  it refuses are lost, and counted.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time

from django.db import (
    DatabaseError,
    InterfaceError,
    OperationalError,
    close_old_connections,
    connections,
    transaction,
)

from secure_ws.audit.batcher import AuditBatcher
from secure_ws.audit.records import OUTCOME_UNRECORDED, PendingRecord
from secure_ws.audit.storage import SERVER_ID, audit_alias, bump_row, write_batch
from secure_ws.codes import Outcome
from secure_ws.conf import get_settings

logger = logging.getLogger("secure_ws.audit.writer")


def _short_hash(*parts: str) -> str:
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


class DatabaseSink:
    """Writes audit batches to the database alias the routers choose for audit rows."""

    def __init__(self) -> None:
        self._failing = False
        #: Failed writes not yet reported to the metrics (see :meth:`take_failures`).
        self._failures = 0

    def take_failures(self) -> int:
        """Return the number of failed writes since the last call."""
        failures, self._failures = self._failures, 0
        return failures

    def write(
        self,
        batcher: AuditBatcher,
        lock: threading.Lock,
        *,
        final: bool,
        deadline: float | None = None,
    ) -> bool:
        """Write what ``batcher`` holds; return ``False`` if anything stayed unwritten.

        Args:
            batcher: the records; access it only while holding ``lock``.
            lock: serialises access to ``batcher`` with the event loop's side.
            final: write every record (see :meth:`AuditBatcher.take`).
            deadline: a ``time.monotonic()`` after which no new batch is started.
        """
        if not connections[audit_alias()].in_atomic_block:
            close_old_connections()
        young_after = time.time() - 2 * get_settings().AUDIT_FLUSH_INTERVAL
        with lock:
            batches = batcher.take(final=final, young_after=young_after)
        ok = True
        try:
            for index, batch in enumerate(batches):
                if deadline is not None and time.monotonic() > deadline:
                    written = 0
                else:
                    written = self._write_batch(batch, batcher, lock)
                if written < len(batch):
                    rest = [r for later in batches[index + 1 :] for r in later]
                    with lock:
                        batcher.requeue(batch[written:] + rest)
                    ok = False
                    break
        finally:
            with lock:
                batcher.finish()
        if ok:
            ok = self._write_counters(batcher, lock)
        with lock:
            batcher.prune(time.time())
        return ok

    def _write_batch(
        self, batch: list[PendingRecord], batcher: AuditBatcher, lock: threading.Lock
    ) -> int:
        """Write ``batch``; return how many of its records are done (written or lost)."""
        try:
            with transaction.atomic(using=audit_alias()):
                write_batch(batch)
        except (OperationalError, InterfaceError) as exc:
            self._failed(exc)
            return 0
        except DatabaseError as exc:
            logger.error(
                "audit batch refused (%s); writing it record by record", type(exc).__name__
            )
            return self._write_one_by_one(batch, batcher, lock)
        except Exception as exc:
            # Misconfiguration, a blocked connection: keep the records.
            self._failed(exc)
            return 0
        self._recovered()
        with lock:
            batcher.written(len(batch))
        return len(batch)

    def _write_one_by_one(
        self, batch: list[PendingRecord], batcher: AuditBatcher, lock: threading.Lock
    ) -> int:
        for index, record in enumerate(batch):
            try:
                with transaction.atomic(using=audit_alias()):
                    write_batch([record])
            except (OperationalError, InterfaceError) as exc:
                self._failed(exc)
                return index
            except DatabaseError as exc:
                self._failures += 1
                with lock:
                    batcher.lose(record.kind, record.connection_id)
                logger.error(
                    "audit record refused by the database (%s): connection_id=%s",
                    type(exc).__name__,
                    record.connection_id,
                )
            except Exception as exc:
                self._failed(exc)
                return index
            with lock:
                batcher.written(1)
        self._recovered()
        return len(batch)

    def _write_counters(self, batcher: AuditBatcher, lock: threading.Lock) -> bool:
        """Write the aggregated refusals and the lost-record count; keep them on failure."""
        with lock:
            if not batcher.has_counters:
                return True
            aggregates, lost = batcher.take_counters()
        try:
            with transaction.atomic(using=audit_alias()):
                for (ip, reason, minute), entry in aggregates.items():
                    bump_row(
                        f"agg-{minute}-{_short_hash(SERVER_ID, ip, reason)}",
                        entry.count,
                        client_ip=ip,
                        reason=reason,
                        minute=minute,
                        outcome=Outcome.REFUSED.value,
                        origin=entry.origin,
                        path=entry.path,
                        user_agent=entry.user_agent,
                        note=f"refusals from {ip} for {reason} past the aggregation threshold",
                    )
                if lost.attempts or lost.other:
                    minute = int(time.time() // 60)
                    bump_row(
                        f"lost-{minute}-{_short_hash(SERVER_ID)}",
                        lost.attempts,
                        client_ip="",
                        reason="audit_buffer_full",
                        minute=minute,
                        outcome=OUTCOME_UNRECORDED,
                        violations=lost.other,
                        note="attempts not recorded: audit buffer full "
                        "(violations = close/event records lost)",
                    )
        except Exception as exc:
            self._failed(exc)
            with lock:
                batcher.requeue_counters(aggregates, lost)
            return False
        self._recovered()
        return True

    def _failed(self, exc: Exception) -> None:
        self._failures += 1
        if not self._failing:
            # The exception type only: a driver message may quote parameters.
            logger.warning(
                "audit database write failed (%s); records kept in the buffer",
                type(exc).__name__,
            )
        self._failing = True
        db = connections[audit_alias()]
        if not db.in_atomic_block:
            # Reconnect on the next flush (a restarted database drops our socket).
            db.close()

    def _recovered(self) -> None:
        if self._failing:
            logger.warning("audit database is back; buffered records written")
        self._failing = False
