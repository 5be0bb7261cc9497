"""The audit interface the gate and the consumer call, and the process's implementation.

Every accepted connection, security event, refusal and close goes through
:func:`get_audit_sink`. The calls come from the event loop and must not block: the
writer only appends to an in-process buffer that a background flusher hands to the sinks
(``AUDIT_SINKS``: log line, metrics, database). With no sink active the calls do nothing.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Protocol

from secure_ws.audit.sinks import active_sinks
from secure_ws.audit.writer import get_writer
from secure_ws.codes import Reason
from secure_ws.conf import register_cache_clearer
from secure_ws.connection import ConnectionInfo


class AuditSink(Protocol):
    """Receives the audit trail of connections. Every method must return without blocking."""

    def connection_refused(self, info: ConnectionInfo, reason: Reason) -> None:
        """Record a refused connection attempt."""

    def connection_opened(self, info: ConnectionInfo) -> None:
        """Record an accepted connection."""

    def security_event(self, info: ConnectionInfo, kind: str, detail: str) -> None:
        """Record a violation inside a connection (``kind`` is an error or reason code)."""

    def connection_closed(self, info: ConnectionInfo, close_code: int) -> None:
        """Record the close of an accepted connection, with its traffic counters in ``info``."""


class NullAuditSink:
    """Records nothing: used when no sink is active (``AUDIT_SINKS = []``)."""

    def connection_refused(self, info: ConnectionInfo, reason: Reason) -> None:
        return None

    def connection_opened(self, info: ConnectionInfo) -> None:
        return None

    def security_event(self, info: ConnectionInfo, kind: str, detail: str) -> None:
        return None

    def connection_closed(self, info: ConnectionInfo, close_code: int) -> None:
        return None


@lru_cache(maxsize=1)
def get_audit_sink() -> AuditSink:
    """Return the process's audit sink, as ``AUDIT_SINKS`` and ``AUDIT_ENABLED`` choose."""
    if not active_sinks():
        return NullAuditSink()
    return get_writer()


register_cache_clearer(get_audit_sink.cache_clear)
