"""``ConnectionState``: everything one open connection carries, in one slotted object.

A consumer instance holds its Channels plumbing (``scope``, ``base_send``,
``channel_layer``, ``channel_name``) and one of these. Keeping the per-connection state
here, with ``__slots__``, keeps an idle connection as small as a plain Channels consumer
and gives a reader one place that lists what a connection knows:

- who it is (:class:`~secure_ws.connection.ConnectionInfo`, also the audit record),
- its limits, traffic counters and unread-output bound,
- its timers, its groups and the connection registry holding it,
- where it is in its life (accepted, closing, cleaned up, the close code),
- the receive loop's wake-up future, in-process inbox and channel-layer receive
  (:mod:`secure_ws.consumer.loop`).

It is also the connection's audit handle: every audit call goes through a typed method
here, and a failing sink is logged, never allowed to decide the connection.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from secure_ws import signals
from secure_ws.audit.sink import get_audit_sink
from secure_ws.codes import CloseCode, ErrorCode, Reason
from secure_ws.connection import ConnectionInfo
from secure_ws.consumer.timers import Closer, ConnectionTimers

if TYPE_CHECKING:
    from secure_ws.consumer.backpressure import OutputBound
    from secure_ws.consumer.limits import ConnectionLimits
    from secure_ws.consumer.traffic import ConnectionTraffic
    from secure_ws.sessions.registry import ConnectionRegistry

logger = logging.getLogger("secure_ws.consumer")

Message = dict[str, Any]


class ConnectionState:
    """The state of one connection, owned by its consumer (see the module docstring)."""

    __slots__ = (
        "accepted",
        "channel_failed",
        "channel_task",
        "cleaned",
        "close_code",
        "closing",
        "groups",
        "handler_errors",
        "inbox",
        "info",
        "limits",
        "output",
        "pending_end",
        "registry",
        "timers",
        "traffic",
        "wake",
    )

    def __init__(self, close: Closer, warn: Callable[[float], Awaitable[None]]) -> None:
        #: Who the connection is; replaced by the gate's object when it is admitted.
        self.info = ConnectionInfo()
        #: Limits, counters and the unread-output bound: set once the connection is admitted.
        self.limits: ConnectionLimits | None = None
        self.traffic: ConnectionTraffic | None = None
        self.output: OutputBound | None = None
        #: Expiry and idle timers: they close with ``close``, warn with ``warn``.
        self.timers = ConnectionTimers(close=close, warn=warn, failed=self.handler_error)
        #: Channel-layer groups joined (left again when the connection ends).
        self.groups: list[str] = []
        #: The connection registry holding this connection (set when it is admitted).
        self.registry: ConnectionRegistry | None = None
        self.accepted = False
        self.closing = False
        self.cleaned = False
        self.close_code: int | None = None
        #: A close the registry asked for before the accept: (code, reason).
        self.pending_end: tuple[CloseCode, Reason] | None = None
        self.handler_errors = 0
        #: The receive loop's wake-up (None: not serving, or not any more).
        self.wake: asyncio.Future[None] | None = None
        #: Events delivered in-process, waiting for the loop (a list only once one arrives).
        self.inbox: list[Message] | None = None
        #: The running channel-layer receive (None: no channel yet, or its receive failed).
        self.channel_task: asyncio.Future[Message] | None = None
        self.channel_failed = False

    # ------------------------------------------------------------------ audit handle

    def opened(self) -> None:
        """Write the ``connection_opened`` audit record."""
        try:
            get_audit_sink().connection_opened(self.info)
        except Exception:
            self._sink_failed()

    def closed(self, code: int) -> None:
        """Write the one ``connection_closed`` audit record of this connection."""
        try:
            get_audit_sink().connection_closed(self.info, int(code))
        except Exception:
            self._sink_failed()

    def security_event(self, kind: str, detail: str) -> None:
        """Log, audit and signal one security event of this connection (never raw input)."""
        info = self.info
        logger.info("security event %s: connection_id=%s", kind, info.connection_id)
        try:
            get_audit_sink().security_event(info, kind, detail)
        except Exception:
            self._sink_failed()
        signals.send_soon(signals.security_event, info=info, kind=kind, detail=detail)

    def handler_error(self, where: str) -> None:
        """Log (with the traceback: call it inside ``except``), count and audit a failure."""
        self.handler_errors += 1
        logger.exception("%s failed: connection_id=%s", where, self.info.connection_id)
        try:
            get_audit_sink().security_event(self.info, ErrorCode.SERVER_ERROR.value, where)
        except Exception:
            self._sink_failed()

    def _sink_failed(self) -> None:
        # Audit never decides a connection: log and carry on.
        logger.exception("audit sink failed: connection_id=%s", self.info.connection_id)
