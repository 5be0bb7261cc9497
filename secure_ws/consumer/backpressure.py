"""The bound on the output one connection's client leaves unread (``MAX_PENDING_OUTPUT``).

daphne's ``send`` never waits: a client with a tiny receive window that keeps sending
allowed requests makes daphne buffer every reply (an auditor grew its RSS from 107 to 244
MiB in 35 s with a few such sockets, and autobahn's ping timeout never fired because
incoming data counts as liveness). uvicorn's ``send`` waits for the socket to drain
instead, so there a stalled client shows up as a send that does not return.

:class:`OutputBound` holds one connection's server buffer (found by
:mod:`secure_ws.compat`) and its limits, and answers the consumer's three questions
cheaply (an attribute read on the transport, no syscall): is the client past the bound,
may this send wait, and should this fan-out event be dropped. The consumer
(:mod:`secure_ws.consumer.outbound`) does the sending and the closing.
"""

from __future__ import annotations

import logging
from typing import Any

from secure_ws.compat import OutputBuffer, find_output_buffer
from secure_ws.connection import ConnectionInfo
from secure_ws.consumer.limits import ConnectionLimits

logger = logging.getLogger("secure_ws.consumer")

#: Seconds the ``error`` frame and close of a slow consumer get to leave before the
#: transport is aborted (the client does not read, so they usually cannot).
SLOW_CLOSE_GRACE = 1.0

#: The socket's kernel send buffer is capped at ``max_pending_output`` divided by this
#: (Linux doubles the value), so a stalled client holds at most about 1.5 times
#: ``MAX_PENDING_OUTPUT`` of server memory, kernel included.
SOCKET_BUFFER_DIVISOR = 4

_unmeasured_warned = False


def _warn_unmeasured_once() -> None:
    global _unmeasured_warned
    if not _unmeasured_warned:
        _unmeasured_warned = True
        logger.warning(
            "secure_ws cannot see this server's transport buffers: MAX_PENDING_OUTPUT is "
            "not enforced (supported: daphne, uvicorn)"
        )


class OutputBound:
    """One connection's unread output, its bound, and the fan-out events it cost.

    Attributes:
        buffer: the server's buffer of the connection.
        max_pending: unread bytes past which the connection is closed.
        timeout: seconds one send may wait when the server's send waits (uvicorn).
        drop_above: unread bytes past which fan-out events are dropped.
    """

    __slots__ = ("buffer", "drop_above", "info", "max_pending", "timeout")

    def __init__(
        self,
        buffer: OutputBuffer,
        info: ConnectionInfo,
        limits: ConnectionLimits,
        drop_fraction: float = 0.5,
    ) -> None:
        self.buffer = buffer
        self.info = info
        self.max_pending = limits.max_pending_output
        self.timeout = limits.pending_output_timeout
        self.drop_above = int(limits.max_pending_output * drop_fraction)

    @classmethod
    def attach(
        cls, send: Any, info: ConnectionInfo, limits: ConnectionLimits, drop_fraction: float
    ) -> OutputBound | None:
        """Find the buffer behind ``send`` and cap the socket's kernel buffer (once).

        Returns ``None`` (and warns once per process) under a server
        :mod:`secure_ws.compat` does not know.
        """
        buffer = find_output_buffer(send)
        if buffer is None:
            _warn_unmeasured_once()
            return None
        buffer.limit_socket_buffer(limits.max_pending_output // SOCKET_BUFFER_DIVISOR)
        return cls(buffer, info, limits, drop_fraction)

    @property
    def blocking(self) -> bool:
        """Whether the server's send waits while the buffer is full."""
        return self.buffer.blocking

    def pending(self) -> int:
        """Bytes sent to the client that it has not taken yet."""
        return self.buffer.pending()

    def drop_event(self) -> int:
        """Count a fan-out event as dropped if the client is behind; return its unread bytes.

        Returns 0 when the event should be sent.
        """
        pending = self.buffer.pending()
        if pending <= self.drop_above:
            return 0
        self.info.events_dropped += 1
        return pending
