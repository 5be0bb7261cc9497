"""The per-record sinks the flusher feeds: the JSON log line and the Prometheus metrics.

Both see every audit call, in order, shortly after it happened (within
``AUDIT_FLUSH_INTERVAL``), whatever the database does. The database sink is the other
kind: it writes batches that :class:`~secure_ws.audit.batcher.AuditBatcher` prepares
(:mod:`secure_ws.audit.database`). Which sinks run is ``AUDIT_SINKS``
(:func:`active_sinks`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from secure_ws.audit import metrics
from secure_ws.audit.records import COUNTER_FIELDS, Entry
from secure_ws.conf import AUDIT_SINK_NAMES, get_settings

audit_logger = logging.getLogger("secure_ws.audit")

#: The names ``AUDIT_SINKS`` may hold.
SINK_NAMES = AUDIT_SINK_NAMES

#: The sinks ``AUDIT_ENABLED = False`` leaves running: it turns the audit trail off, not
#: the operational metrics.
SINKS_WITHOUT_AUDIT_TRAIL = ("metrics",)


def active_sinks() -> tuple[str, ...]:
    """Return the sinks to feed: ``AUDIT_SINKS``, less log and database if not ``AUDIT_ENABLED``."""
    settings = get_settings()
    names = tuple(settings.AUDIT_SINKS)
    if not settings.AUDIT_ENABLED:
        names = tuple(name for name in names if name in SINKS_WITHOUT_AUDIT_TRAIL)
    return names


_LOG_EVENTS = {
    "open": "accepted",
    "refuse": "refused",
    "event": "security_event",
    "close": "closed",
}


class RecordSink(Protocol):
    """Receives every audit call, in the flusher thread. Must not raise for one bad record."""

    def emit(self, entries: Iterable[Entry]) -> None:
        """Handle ``entries`` (oldest first)."""

    def report(self, *, depth: int, lost: Mapping[str, int], write_failures: int) -> None:
        """Take the writer's state after a flush: records waiting, lost since the last report."""


class LogSink:
    """One JSON line per record on the ``secure_ws.audit`` logger, for SIEMs."""

    def emit(self, entries: Iterable[Entry]) -> None:
        if not audit_logger.isEnabledFor(logging.INFO):
            return
        for entry in entries:
            audit_logger.info(json.dumps(log_record(entry), default=str, sort_keys=True))

    def report(self, *, depth: int, lost: Mapping[str, int], write_failures: int) -> None:
        return None


def log_record(entry: Entry) -> dict[str, Any]:
    """Return the JSON object of one audit call's log line (no token, ticket or query)."""
    kind, _, info, arguments = entry
    record: dict[str, Any] = {
        "event": _LOG_EVENTS[kind],
        "connection_id": info.connection_id,
        "client_ip": info.client_ip,
        # ASGI paths carry no query string; strip one anyway, it may hold a token.
        "path": info.path.split("?", 1)[0],
        "origin": info.origin,
        "auth_method": info.auth_method.value,
        "user_id": info.user_id,
        "username": info.username,
    }
    if kind == "refuse":
        record["reason"] = arguments
    elif kind == "event":
        record["kind"], record["detail"] = arguments
    elif kind == "close":
        close_code, counters, close_reason, events_dropped = arguments
        record.update(zip(COUNTER_FIELDS, counters, strict=True))
        record.update(close_code=close_code, reason=close_reason, events_dropped=events_dropped)
    return record


class MetricsSink:
    """Feeds the Prometheus metrics of :mod:`secure_ws.audit.metrics`."""

    def emit(self, entries: Iterable[Entry]) -> None:
        for kind, at, info, arguments in entries:
            if kind == "refuse":
                metrics.observe_refused(str(arguments), at - info.opened_at)
            elif kind == "open":
                metrics.observe_accepted(at - info.opened_at)
            elif kind == "event":
                metrics.observe_security_event(arguments[0])
            else:
                counters, events_dropped = arguments[1], arguments[3]
                metrics.observe_closed(counters[0], counters[1], events_dropped)

    def report(self, *, depth: int, lost: Mapping[str, int], write_failures: int) -> None:
        metrics.AUDIT_BUFFER_DEPTH.set(depth)
        for kind, count in lost.items():
            metrics.AUDIT_RECORDS_LOST.labels(kind=kind).inc(count)
        if write_failures:
            metrics.AUDIT_WRITE_FAILURES.inc(write_failures)


def record_sinks(names: Iterable[str]) -> list[RecordSink]:
    """Return the per-record sinks among ``names``, in the order given."""
    sinks: dict[str, RecordSink] = {"log": LogSink(), "metrics": MetricsSink()}
    return [sinks[name] for name in names if name in sinks]
