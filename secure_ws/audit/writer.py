"""The buffered audit writer: the database sink behind :func:`secure_ws.audit.sink.get_audit_sink`.

Sink calls come from the event loop. They only snapshot the audit-safe facts, append them
to a bounded in-memory buffer under a short lock and return: no database round trip on the
handshake. A background thread writes the buffer in batches (``AUDIT_BATCH_SIZE`` records
or every ``AUDIT_FLUSH_INTERVAL`` seconds); :meth:`AuditWriter.flush` does the same on demand
(tests, shutdown, ``atexit``) and writes everything.

The flusher keeps the statements few, because it competes with the event loop for the GIL:
an open and its close are put in the same batch, so a connection closed before its open was
written is one INSERT with its final counters; the background pass leaves an open younger
than two flush intervals in the buffer until its close arrives; the closes of rows written
earlier are one UPDATE per batch (see :func:`secure_ws.audit.storage.update_closes`).

Accounting is exact, so an attacker cannot hide attempts nor flood the table:

* past ``AUDIT_AGGREGATE_THRESHOLD`` refusals with the same (client IP, reason, minute), the
  next ones only bump a counter that is written as one aggregated row whose ``count`` says
  how many attempts it stands for;
* when the database is down, a failed batch goes back to the front of the buffer and is
  written when the database returns;
* past ``AUDIT_BUFFER_SIZE`` buffered records a new record is not kept but counted and
  logged, and the count is written later as an ``unrecorded`` row: the sum of ``count``
  over all rows is always the number of attempts.

Every record is also one JSON line on the ``secure_ws.audit`` logger (for SIEMs).
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from django.db import (
    DatabaseError,
    InterfaceError,
    OperationalError,
    close_old_connections,
    connections,
    transaction,
)

from secure_ws import metrics
from secure_ws.audit.sink import log_audit_line
from secure_ws.audit.storage import (
    SERVER_ID,
    PendingRecord,
    audit_alias,
    bump_row,
    write_batch,
)
from secure_ws.codes import Outcome, Reason
from secure_ws.conf import get_settings
from secure_ws.connection import MAX_USER_AGENT_CHARS, ConnectionInfo
from secure_ws.logsafe import escape_for_log

logger = logging.getLogger(__name__)


@dataclass
class _Aggregate:
    count: int = 0
    origin: str = ""
    path: str = ""
    user_agent: str = ""


@dataclass
class _Lost:
    attempts: int = 0
    other: int = 0
    opens: set[str] = field(default_factory=set)


def _clip(value: str | None, limit: int) -> str:
    return (value or "")[:limit]


def _snapshot(info: ConnectionInfo) -> dict[str, Any]:
    """Return the audit-safe columns of ``info`` (never a token, ticket or query string)."""
    return {
        "connection_id": info.connection_id[:64],
        "user_id": info.user_id,
        "username": _clip(info.username, 150),
        "client_ip": _clip(info.client_ip, 64),
        "origin": _clip(info.origin, 255),
        "user_agent": _clip(info.user_agent, MAX_USER_AGENT_CHARS),
        "path": _clip(info.path.split("?", 1)[0], 255),
        "auth_method": info.auth_method.value,
        "opened_at": info.opened_at,
        "channel_name": _clip(info.channel_name, 128),
        "messages_in": info.messages_in,
        "messages_out": info.messages_out,
        "bytes_in": info.bytes_in,
        "bytes_out": info.bytes_out,
        "violations": info.violations,
    }


def _short_hash(*parts: str) -> str:
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


class AuditWriter:
    """Buffers audit records in memory and writes them to the database in batches.

    Args:
        autostart: start the background flusher on the first record (tests pass ``False``
            and call :meth:`flush` themselves).
    """

    def __init__(self, *, autostart: bool = True) -> None:
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._pending: deque[PendingRecord] = deque()
        self._in_flight = 0  # records taken by a flush and not yet written or requeued
        self._minute_counts: dict[tuple[str, str, int], int] = {}
        self._aggregates: dict[tuple[str, str, int], _Aggregate] = {}
        self._lost = _Lost()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._autostart = autostart
        self._failing = False

    # -- the sink interface (event loop side: never blocks) --------------------------

    def connection_refused(self, info: ConnectionInfo, reason: Reason) -> None:
        """Buffer one refusal, or count it into its (IP, reason, minute) aggregate."""
        log_audit_line("refused", info, reason=reason.value)
        metrics.observe_refused(info, reason.value)
        now = time.time()
        bucket = (info.client_ip, reason.value, int(now // 60))
        with self._lock:
            seen = self._minute_counts.get(bucket, 0) + 1
            if seen == 1 and len(self._minute_counts) >= get_settings().AUDIT_BUFFER_SIZE:
                # Too many distinct sources this minute to track: aggregate at once.
                self._aggregate_locked(bucket, info)
                return
            self._minute_counts[bucket] = seen
            if seen > get_settings().AUDIT_AGGREGATE_THRESHOLD:
                self._aggregate_locked(bucket, info)
                return
            self._append_locked(
                PendingRecord("refuse", now, {**_snapshot(info), "reason": reason.value})
            )

    def connection_opened(self, info: ConnectionInfo) -> None:
        """Buffer the open of an accepted connection; its close updates the same row."""
        log_audit_line("accepted", info)
        metrics.observe_accepted(info)
        with self._lock:
            self._append_locked(PendingRecord("open", time.time(), _snapshot(info)))

    def security_event(self, info: ConnectionInfo, kind: str, detail: str) -> None:
        """Buffer one violation inside a connection, linked to its record."""
        log_audit_line("security_event", info, kind=kind, detail=detail)
        metrics.observe_security_event(kind)
        with self._lock:
            self._append_locked(
                PendingRecord(
                    "event",
                    time.time(),
                    {"connection_id": info.connection_id[:64]},
                    # The detail may quote client input (a message type, a name).
                    event_kind=escape_for_log(kind)[:32],
                    detail=escape_for_log(detail)[:255],
                )
            )

    def connection_closed(self, info: ConnectionInfo, close_code: int) -> None:
        """Buffer the close of an accepted connection with its final traffic counters."""
        log_audit_line(
            "closed",
            info,
            close_code=close_code,
            messages_in=info.messages_in,
            messages_out=info.messages_out,
            bytes_in=info.bytes_in,
            bytes_out=info.bytes_out,
            violations=info.violations,
            reason=info.close_reason,
            events_dropped=info.events_dropped,
        )
        metrics.observe_closed(info)
        fields = {
            **_snapshot(info),
            "close_code": close_code,
            "reason": _clip(info.close_reason, 32),
            "note": f"{info.events_dropped} events dropped (slow consumer)"
            if info.events_dropped
            else "",
        }
        with self._lock:
            self._append_locked(PendingRecord("close", time.time(), fields))

    # -- buffering ------------------------------------------------------------------

    def _append_locked(self, record: PendingRecord) -> None:
        connection_id = record.fields["connection_id"]
        if record.kind != "open" and connection_id in self._lost.opens:
            # Its row was never kept: a close or event for it cannot be linked.
            if record.kind == "close":
                self._lost.opens.discard(connection_id)
            self._lose_locked(record)
            return
        if len(self._pending) + self._in_flight >= get_settings().AUDIT_BUFFER_SIZE:
            self._lose_locked(record)
            return
        self._pending.append(record)
        metrics.AUDIT_BUFFER_DEPTH.set(len(self._pending))
        if len(self._pending) >= get_settings().AUDIT_BATCH_SIZE:
            self._wake.set()
        self._ensure_thread_locked()

    def _aggregate_locked(self, bucket: tuple[str, str, int], info: ConnectionInfo) -> None:
        entry = self._aggregates.get(bucket)
        if entry is None:
            if len(self._aggregates) >= get_settings().AUDIT_BUFFER_SIZE:
                self._lose_locked(PendingRecord("refuse", time.time(), _snapshot(info)))
                return
            entry = _Aggregate(
                origin=_clip(info.origin, 255),
                path=_clip(info.path.split("?", 1)[0], 255),
                user_agent=_clip(info.user_agent, MAX_USER_AGENT_CHARS),
            )
            self._aggregates[bucket] = entry
        entry.count += 1
        self._ensure_thread_locked()

    def _lose_locked(self, record: PendingRecord) -> None:
        if record.kind in ("open", "refuse"):
            self._lost.attempts += 1
            if record.kind == "open":
                self._lost.opens.add(record.fields["connection_id"])
        else:
            self._lost.other += 1
        metrics.AUDIT_RECORDS_LOST.labels(kind=record.kind).inc()
        logger.warning(
            "audit buffer full: %s record counted but not kept (connection_id=%s)",
            record.kind,
            record.fields.get("connection_id", ""),
        )

    def _ensure_thread_locked(self) -> None:
        if not self._autostart or (self._thread is not None and self._thread.is_alive()):
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name="secure_ws-audit-writer", daemon=True
        )
        self._thread.start()

    @property
    def depth(self) -> int:
        """Number of records waiting in the buffer."""
        return len(self._pending)

    # -- writing (flusher thread or caller of flush) ----------------------------------

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

    def stop(self) -> None:
        """Stop the background flusher (after one last flush)."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)
        self._thread = None

    def flush(self, *, final: bool = True) -> bool:
        """Write everything buffered now, in batches. Return ``False`` if the database failed.

        On failure the unwritten records stay in the buffer (in order) for the next flush.

        Args:
            final: write every record. The background flusher passes ``False``: an open
                younger than two flush intervals whose close has not arrived yet stays in
                the buffer (with its events), so a short connection becomes one INSERT
                with its final counters instead of an INSERT and a later UPDATE.
        """
        with self._flush_lock:
            if not connections[audit_alias()].in_atomic_block:
                close_old_connections()
            with self._lock:
                records = list(self._pending)
                self._pending.clear()
                self._in_flight = len(records)
            try:
                ok = self._write_records(records, final=final)
            finally:
                self._in_flight = 0
            if ok:
                ok = self._write_counters()
            self._prune_minute_counts()
            metrics.AUDIT_BUFFER_DEPTH.set(len(self._pending))
            return ok

    def _write_records(self, records: list[PendingRecord], *, final: bool) -> bool:
        held: list[PendingRecord] = []
        if not final:
            young_after = time.time() - 2 * get_settings().AUDIT_FLUSH_INTERVAL
            records = _hold_young_opens(records, young_after, held)
        records = _pair_closes(records)
        size = get_settings().AUDIT_BATCH_SIZE
        ok = True
        start = 0
        while start < len(records):
            end = min(start + size, len(records))
            if end < len(records) and _is_pair(records[end - 1], records[end]):
                end += 1  # never split an open from its close
            ok = self._write_or_requeue(records[start:end], rest=records[end:])
            if not ok:
                break
            with self._lock:
                self._in_flight = len(records) - end
            start = end
        if held:
            with self._lock:
                self._pending.extendleft(reversed(held))
        return ok

    def _write_or_requeue(
        self, batch: list[PendingRecord], *, rest: list[PendingRecord] | None = None
    ) -> bool:
        """Write ``batch``; on failure put it and ``rest`` back at the front, in order."""
        rest = rest or []
        try:
            with transaction.atomic(using=audit_alias()):
                write_batch(batch)
        except (OperationalError, InterfaceError) as exc:
            # The database is unreachable: keep everything, in order, for the next flush.
            self._database_failed(exc)
            with self._lock:
                self._pending.extendleft(reversed(batch + rest))
            return False
        except DatabaseError as exc:
            # The database refused the data itself: a poison record must not block the
            # buffer forever. Write one by one; only the records it refuses are lost
            # (and counted).
            logger.error(
                "audit batch refused (%s); writing it record by record", type(exc).__name__
            )
            return self._write_one_by_one(batch, rest)
        except Exception as exc:
            # Anything else (misconfiguration, a blocked connection): keep the records.
            self._database_failed(exc)
            with self._lock:
                self._pending.extendleft(reversed(batch + rest))
            return False
        self._database_ok()
        return True

    def _write_one_by_one(self, batch: list[PendingRecord], rest: list[PendingRecord]) -> bool:
        for index, record in enumerate(batch):
            try:
                with transaction.atomic(using=audit_alias()):
                    write_batch([record])
            except (OperationalError, InterfaceError) as exc:
                self._database_failed(exc)
                with self._lock:
                    self._pending.extendleft(reversed(batch[index:] + rest))
                return False
            except DatabaseError as exc:
                metrics.AUDIT_WRITE_FAILURES.inc()
                with self._lock:
                    self._lose_locked(record)
                logger.error(
                    "audit record refused by the database (%s): connection_id=%s",
                    type(exc).__name__,
                    record.fields.get("connection_id", ""),
                )
            except Exception as exc:
                self._database_failed(exc)
                with self._lock:
                    self._pending.extendleft(reversed(batch[index:] + rest))
                return False
        self._database_ok()
        return True

    def _database_failed(self, exc: Exception) -> None:
        metrics.AUDIT_WRITE_FAILURES.inc()
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

    def _database_ok(self) -> None:
        if self._failing:
            logger.warning("audit database is back; buffered records written")
        self._failing = False

    def _write_counters(self) -> bool:
        """Write the aggregated refusals and the lost-record count; requeue on failure."""
        with self._lock:
            aggregates, self._aggregates = self._aggregates, {}
            lost = self._lost
            self._lost = _Lost(opens=lost.opens)
        if not aggregates and not lost.attempts and not lost.other:
            return True
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
                    from secure_ws.audit.models import OUTCOME_UNRECORDED

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
        except (DatabaseError, InterfaceError) as exc:
            self._database_failed(exc)
            with self._lock:
                for bucket, entry in aggregates.items():
                    current = self._aggregates.setdefault(bucket, _Aggregate())
                    current.count += entry.count
                    current.origin = current.origin or entry.origin
                self._lost.attempts += lost.attempts
                self._lost.other += lost.other
            return False
        self._database_ok()
        return True

    def _prune_minute_counts(self) -> None:
        current = int(time.time() // 60)
        with self._lock:
            for bucket in [b for b in self._minute_counts if b[2] < current - 1]:
                del self._minute_counts[bucket]


def _hold_young_opens(
    records: list[PendingRecord], young_after: float, held: list[PendingRecord]
) -> list[PendingRecord]:
    """Move the young opens whose close has not arrived (and their events) to ``held``.

    Return the records to write now. Their close usually follows within milliseconds, and
    an open written together with its close is one INSERT instead of an INSERT now and an
    UPDATE later.
    """
    closed = {r.fields["connection_id"] for r in records if r.kind == "close"}
    held_ids: set[str] = set()
    write: list[PendingRecord] = []
    for record in records:
        connection_id = record.fields["connection_id"]
        if connection_id in held_ids:
            held.append(record)
        elif record.kind == "open" and record.at > young_after and connection_id not in closed:
            held.append(record)
            held_ids.add(connection_id)
        else:
            write.append(record)
    return write


def _pair_closes(records: list[PendingRecord]) -> list[PendingRecord]:
    """Move each close right after its open (when both are here) so they share a batch.

    Events stay where they were: they are linked by connection id, in whatever batch.
    """
    opened = {r.fields["connection_id"] for r in records if r.kind == "open"}
    moved: dict[str, PendingRecord] = {}
    for record in records:
        connection_id = record.fields["connection_id"]
        if record.kind == "close" and connection_id in opened and connection_id not in moved:
            moved[connection_id] = record
    if not moved:
        return records
    paired: list[PendingRecord] = []
    for record in records:
        connection_id = record.fields["connection_id"]
        if record.kind == "close" and moved.get(connection_id) is record:
            continue
        paired.append(record)
        if record.kind == "open" and connection_id in moved:
            paired.append(moved[connection_id])
    return paired


def _is_pair(first: PendingRecord, second: PendingRecord) -> bool:
    return (
        first.kind == "open"
        and second.kind == "close"
        and first.fields["connection_id"] == second.fields["connection_id"]
    )


@lru_cache(maxsize=1)
def get_writer() -> AuditWriter:
    """Return the process-wide audit writer; it is flushed at interpreter exit."""
    writer = AuditWriter()
    atexit.register(_flush_at_exit, writer)
    return writer


def _flush_at_exit(writer: AuditWriter) -> None:
    if writer.depth or writer._aggregates or writer._lost.attempts or writer._lost.other:
        try:
            writer.flush()
        except Exception:
            logger.exception("audit flush at exit failed")
    writer.stop()
