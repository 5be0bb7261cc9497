"""The one interface every accepted connection, security event, refusal and close goes through.

Sinks are called from the event loop and must not block: the database sink only appends
to an in-memory buffer that a background flusher writes in batches.
"""

from __future__ import annotations

import json
import logging
from functools import lru_cache
from typing import Protocol

from secure_ws.codes import Reason
from secure_ws.conf import get_settings, register_cache_clearer
from secure_ws.connection import ConnectionInfo

audit_logger = logging.getLogger("secure_ws.audit")


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
    """Records nothing: used when ``AUDIT_ENABLED`` is off."""

    def connection_refused(self, info: ConnectionInfo, reason: Reason) -> None:
        return None

    def connection_opened(self, info: ConnectionInfo) -> None:
        return None

    def security_event(self, info: ConnectionInfo, kind: str, detail: str) -> None:
        return None

    def connection_closed(self, info: ConnectionInfo, close_code: int) -> None:
        return None


def log_audit_line(event: str, info: ConnectionInfo, **extra: object) -> None:
    """Write one structured JSON line for SIEMs to the ``secure_ws.audit`` logger."""
    if not audit_logger.isEnabledFor(logging.INFO):
        return
    record = {
        "event": event,
        "connection_id": info.connection_id,
        "client_ip": info.client_ip,
        # ASGI paths carry no query string; strip one anyway, it may hold a token.
        "path": info.path.split("?", 1)[0],
        "origin": info.origin,
        "auth_method": info.auth_method.value,
        "user_id": info.user_id,
        "username": info.username,
        **extra,
    }
    audit_logger.info(json.dumps(record, default=str, sort_keys=True))


@lru_cache(maxsize=1)
def get_audit_sink() -> AuditSink:
    """Return the process's audit sink, as the settings choose."""
    if not get_settings().AUDIT_ENABLED:
        return NullAuditSink()
    from secure_ws.audit.writer import get_writer

    return get_writer()


register_cache_clearer(get_audit_sink.cache_clear)
