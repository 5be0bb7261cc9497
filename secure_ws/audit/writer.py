"""The buffered audit writer: the database sink behind :func:`secure_ws.audit.sink.get_audit_sink`.

Sink calls come from the event loop. They only snapshot the audit-safe facts, append them
to a bounded in-memory buffer under a short lock and return: no database round trip on the
handshake. A background thread writes the buffer in batches (``AUDIT_BATCH_SIZE`` records
or every ``AUDIT_FLUSH_INTERVAL`` seconds) with ``bulk_create``/``bulk_update``;
:meth:`AuditWriter.flush` does the same on demand (tests, shutdown, ``atexit``).

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
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Literal

from django.db import DatabaseError, close_old_connections, connection, transaction
from django.db.models import F

from secure_ws import metrics
from secure_ws.audit.sink import log_audit_line
from secure_ws.codes import Outcome, Reason
from secure_ws.conf import get_settings
from secure_ws.connection import MAX_USER_AGENT_CHARS, ConnectionInfo

logger = logging.getLogger(__name__)

RecordKind = Literal["open", "refuse", "close", "event"]

#: Identity of this process, stored in every row (which process held a connection).
SERVER_ID = f"{socket.gethostname()[:100]}:{os.getpid()}"


@dataclass
class PendingRecord:
    """One buffered audit record: a snapshot, so later changes to the info do not leak in."""

    kind: RecordKind
    at: float
    fields: dict[str, Any]
    event_kind: str = ""
    detail: str = ""


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


def _dt(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=UTC)


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
                    event_kind=kind[:32],
                    detail=detail[:255],
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
        )
        metrics.observe_closed(info)
        with self._lock:
            self._append_locked(
                PendingRecord("close", time.time(), {**_snapshot(info), "close_code": close_code})
            )

    # -- buffering ------------------------------------------------------------------

    def _append_locked(self, record: PendingRecord) -> None:
        connection_id = record.fields["connection_id"]
        if record.kind != "open" and connection_id in self._lost.opens:
            # Its row was never kept: a close or event for it cannot be linked.
            if record.kind == "close":
                self._lost.opens.discard(connection_id)
            self._lose_locked(record)
            return
        if len(self._pending) >= get_settings().AUDIT_BUFFER_SIZE:
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
                self.flush()
            except Exception:
                logger.exception("audit flusher failed; retrying")
            finally:
                # Hold no idle connection: a database restart or a test database drop
                # must not trip over this thread.
                connection.close()

    def stop(self) -> None:
        """Stop the background flusher (after one last flush)."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)
        self._thread = None

    def flush(self) -> bool:
        """Write everything buffered now, in batches. Return ``False`` if the database failed.

        On failure the unwritten records stay in the buffer (in order) for the next flush.
        """
        with self._flush_lock:
            close_old_connections()
            ok = True
            while ok:
                with self._lock:
                    batch = [
                        self._pending.popleft()
                        for _ in range(min(len(self._pending), get_settings().AUDIT_BATCH_SIZE))
                    ]
                if not batch:
                    break
                ok = self._write_or_requeue(batch)
            if ok:
                ok = self._write_counters()
            self._prune_minute_counts()
            metrics.AUDIT_BUFFER_DEPTH.set(len(self._pending))
            return ok

    def _write_or_requeue(self, batch: list[PendingRecord]) -> bool:
        try:
            with transaction.atomic():
                self._write_batch(batch)
        except DatabaseError:
            self._database_failed()
            with self._lock:
                self._pending.extendleft(reversed(batch))
            return False
        self._database_ok()
        return True

    def _database_failed(self) -> None:
        metrics.AUDIT_WRITE_FAILURES.inc()
        if not self._failing:
            logger.warning("audit database write failed; records kept in the buffer")
        self._failing = True
        connection.close()

    def _database_ok(self) -> None:
        if self._failing:
            logger.warning("audit database is back; buffered records written")
        self._failing = False

    def _write_batch(self, batch: list[PendingRecord]) -> None:
        from secure_ws.audit.models import ConnectionRecord, SecurityEvent

        created: dict[str, ConnectionRecord] = {}
        closes: list[PendingRecord] = []
        events: list[PendingRecord] = []
        for record in batch:
            if record.kind in ("open", "refuse"):
                created[record.fields["connection_id"]] = self._new_row(record)
            elif record.kind == "close":
                row = created.get(record.fields["connection_id"])
                if row is not None:
                    self._apply_close(row, record)
                else:
                    closes.append(record)
            else:
                events.append(record)
        ConnectionRecord.objects.bulk_create(created.values(), ignore_conflicts=False)
        if closes:
            existing = ConnectionRecord.objects.in_bulk(
                [c.fields["connection_id"] for c in closes], field_name="connection_id"
            )
            updated: list[ConnectionRecord] = []
            for record in closes:
                row = existing.get(record.fields["connection_id"])
                if row is None:
                    # The open went to an earlier process or was pruned: keep the close.
                    row = self._new_row(PendingRecord("open", record.at, record.fields))
                    self._apply_close(row, record)
                    row.save()
                    continue
                self._apply_close(row, record)
                updated.append(row)
            ConnectionRecord.objects.bulk_update(updated, self._close_fields)
        if events:
            ids = {e.fields["connection_id"] for e in events}
            rows = {cid: row.pk for cid, row in created.items() if cid in ids}
            missing = ids - rows.keys()
            if missing:
                rows.update(
                    ConnectionRecord.objects.filter(connection_id__in=missing).values_list(
                        "connection_id", "pk"
                    )
                )
            SecurityEvent.objects.bulk_create(
                SecurityEvent(
                    record_id=rows[e.fields["connection_id"]],
                    kind=e.event_kind,
                    detail=e.detail,
                    created_at=_dt(e.at),
                )
                for e in events
                if e.fields["connection_id"] in rows
            )
            for e in events:
                if e.fields["connection_id"] not in rows:
                    logger.warning(
                        "security event without a connection record: connection_id=%s",
                        e.fields["connection_id"],
                    )

    _close_fields = (
        "closed_at",
        "duration",
        "close_code",
        "messages_in",
        "messages_out",
        "bytes_in",
        "bytes_out",
        "violations",
        "channel_name",
    )

    @staticmethod
    def _new_row(record: PendingRecord) -> Any:
        from secure_ws.audit.models import ConnectionRecord

        f = record.fields
        accepted = record.kind == "open"
        return ConnectionRecord(
            connection_id=f["connection_id"],
            user_id=f["user_id"],
            username=f["username"],
            client_ip=f["client_ip"],
            origin=f["origin"],
            user_agent=f["user_agent"],
            path=f["path"],
            auth_method=f["auth_method"],
            outcome=Outcome.ACCEPTED.value if accepted else Outcome.REFUSED.value,
            reason="" if accepted else f.get("reason", ""),
            opened_at=_dt(f["opened_at"]),
            closed_at=None if accepted else _dt(record.at),
            server=SERVER_ID,
            channel_name=f["channel_name"],
        )

    @staticmethod
    def _apply_close(row: Any, record: PendingRecord) -> None:
        f = record.fields
        row.closed_at = _dt(record.at)
        row.duration = max(0.0, record.at - f["opened_at"])
        row.close_code = f["close_code"]
        for name in ("messages_in", "messages_out", "bytes_in", "bytes_out", "violations"):
            setattr(row, name, f[name])
        if f["channel_name"]:
            row.channel_name = f["channel_name"]

    def _write_counters(self) -> bool:
        """Write the aggregated refusals and the lost-record count; requeue on failure."""
        with self._lock:
            aggregates, self._aggregates = self._aggregates, {}
            lost = self._lost
            self._lost = _Lost(opens=lost.opens)
        if not aggregates and not lost.attempts and not lost.other:
            return True
        try:
            with transaction.atomic():
                for (ip, reason, minute), entry in aggregates.items():
                    self._bump_row(
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
                    self._bump_row(
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
        except DatabaseError:
            self._database_failed()
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

    @staticmethod
    def _bump_row(
        connection_id: str,
        count: int,
        *,
        client_ip: str,
        reason: str,
        minute: int,
        outcome: str,
        note: str,
        origin: str = "",
        path: str = "",
        user_agent: str = "",
        violations: int = 0,
    ) -> None:
        from secure_ws.audit.models import ConnectionRecord

        updated = ConnectionRecord.objects.filter(connection_id=connection_id).update(
            count=F("count") + count, violations=F("violations") + violations
        )
        if not updated:
            ConnectionRecord.objects.create(
                connection_id=connection_id,
                client_ip=client_ip,
                origin=origin,
                path=path,
                user_agent=user_agent,
                outcome=outcome,
                reason=reason,
                opened_at=_dt(minute * 60),
                closed_at=_dt(minute * 60),
                count=count,
                violations=violations,
                aggregated=True,
                note=note[:255],
                server=SERVER_ID,
            )

    def _prune_minute_counts(self) -> None:
        current = int(time.time() // 60)
        with self._lock:
            for bucket in [b for b in self._minute_counts if b[2] < current - 1]:
                del self._minute_counts[bucket]


def pending_records(writer: AuditWriter) -> Iterable[PendingRecord]:
    """Return a copy of the records waiting in ``writer``'s buffer (for tests and admin)."""
    with writer._lock:
        return list(writer._pending)


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
