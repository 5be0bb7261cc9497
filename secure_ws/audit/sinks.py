"""The per-record sinks the flusher feeds: the JSON log line and the Prometheus metrics.

Both see every audit call, in order, shortly after it happened (within
``AUDIT_FLUSH_INTERVAL``), whatever the database does. The database sink is the other
kind: it writes batches that :class:`~secure_ws.audit.batcher.AuditBatcher` prepares
(:mod:`secure_ws.audit.database`). Which sinks run is ``AUDIT_SINKS``
(:func:`active_sinks`); an entry that is a dotted path names a project's own class with the
four methods of :class:`~secure_ws.audit.sink.AuditSink` (:class:`CustomSink` feeds it).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any, Protocol

from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from secure_ws.audit import metrics
from secure_ws.audit.records import COUNTER_FIELDS, Entry
from secure_ws.codes import Reason
from secure_ws.conf import AUDIT_SINK_NAMES, get_settings

audit_logger = logging.getLogger("secure_ws.audit")
logger = logging.getLogger(__name__)

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


#: The methods a custom sink class must have: those of
#: :class:`~secure_ws.audit.sink.AuditSink` (a test keeps the two in step).
AUDIT_SINK_METHODS = (
    "connection_refused",
    "connection_opened",
    "security_event",
    "connection_closed",
)


def is_custom_sink(name: str) -> bool:
    """Whether an ``AUDIT_SINKS`` entry is a dotted path to a project's class, not a name."""
    return name not in SINK_NAMES


def load_sink_class(path: str) -> type:
    """Import the sink class ``path`` names; raise ImproperlyConfigured if it is not one."""
    where = f"SECURE_WS['AUDIT_SINKS'] entry {path!r}"
    try:
        cls = import_string(path)
    except ImportError as exc:
        raise ImproperlyConfigured(f"{where} cannot be imported: {exc}") from exc
    if not isinstance(cls, type):
        raise ImproperlyConfigured(f"{where} is not a class; see docs/audit.md.")
    missing = [m for m in AUDIT_SINK_METHODS if not callable(getattr(cls, m, None))]
    if missing:
        raise ImproperlyConfigured(
            f"{where} is not an audit sink: it lacks {', '.join(missing)}; see docs/audit.md."
        )
    return cls


class CustomSink:
    """Feeds a project's sink (``AUDIT_SINKS`` entry that is a dotted path) in the flusher.

    The project's class has the four methods of :class:`~secure_ws.audit.sink.AuditSink`
    and is called with the same arguments the gate and consumer passed, from the flusher
    thread, never from the event loop: it may do I/O, at the cost of delaying the flush.
    A record that makes it raise is logged and skipped; the next ones are still delivered.
    """

    def __init__(self, target: Any) -> None:
        self.target = target

    def emit(self, entries: Iterable[Entry]) -> None:
        for entry in entries:
            try:
                self._deliver(entry)
            except Exception:
                logger.exception(
                    "audit sink %s failed on a %s record", type(self.target).__name__, entry[0]
                )

    def _deliver(self, entry: Entry) -> None:
        kind, _, info, arguments = entry
        if kind == "refuse":
            self.target.connection_refused(info, Reason(arguments))
        elif kind == "open":
            self.target.connection_opened(info)
        elif kind == "event":
            self.target.security_event(info, *arguments)
        else:
            # The counters as they were at the close (the info object lives on).
            close_code, counters, _, _ = arguments
            final = dataclasses.replace(info, **dict(zip(COUNTER_FIELDS, counters, strict=True)))
            self.target.connection_closed(final, close_code)

    def report(self, *, depth: int, lost: Mapping[str, int], write_failures: int) -> None:
        return None


@lru_cache(maxsize=16)
def custom_sink(path: str) -> CustomSink:
    """The process's one instance of the sink class ``path`` names (built without arguments)."""
    return CustomSink(load_sink_class(path)())


def record_sinks(names: Iterable[str]) -> list[RecordSink]:
    """Return the per-record sinks among ``names``, in the order given."""
    sinks: dict[str, RecordSink] = {"log": LogSink(), "metrics": MetricsSink()}
    return [
        custom_sink(name) if is_custom_sink(name) else sinks[name]
        for name in names
        if name in sinks or is_custom_sink(name)
    ]
