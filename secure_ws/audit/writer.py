"""Audit writer. Replaced by the buffered database writer (issue 4); logs JSON lines for now."""

from __future__ import annotations

from functools import lru_cache

from secure_ws.audit.sink import log_audit_line
from secure_ws.codes import Reason
from secure_ws.connection import ConnectionInfo


class LoggingAuditSink:
    """Writes every audit record as one JSON line to the ``secure_ws.audit`` logger."""

    def connection_refused(self, info: ConnectionInfo, reason: Reason) -> None:
        log_audit_line("refused", info, reason=reason.value)

    def connection_opened(self, info: ConnectionInfo) -> None:
        log_audit_line("accepted", info)

    def security_event(self, info: ConnectionInfo, kind: str, detail: str) -> None:
        log_audit_line("security_event", info, kind=kind, detail=detail)

    def connection_closed(self, info: ConnectionInfo, close_code: int) -> None:
        log_audit_line("closed", info, close_code=close_code)


@lru_cache(maxsize=1)
def get_writer() -> LoggingAuditSink:
    """Return the process-wide audit writer."""
    return LoggingAuditSink()
