"""``AuditedConsumer``: how an open secure_ws connection talks, closes and ends.

The layers of a secure_ws consumer, bottom up::

    SplitDispatchConsumer        client messages and channel-layer events kept apart
     └ AuditedConsumer           replies, closes, groups, security events, audit, cleanup
        └ SecureJsonWebsocketConsumer   handshake checks, frame limits, validation, handlers

This layer owns the rules every close follows, whoever decides it: an ``error`` frame
carrying the reason first (daphne drops close reasons, daphne#374), then the close code,
or its 4xxx stand-in where the server cannot send it; timers cancelled; groups left; one
``connection_closed`` audit record and signal. Audit failures are logged and never decide
a connection.

It also bounds the output a client leaves unread (``MAX_PENDING_OUTPUT``, see
:mod:`secure_ws.consumer.backpressure`): before each frame it reads the server's buffer; past the
bound it closes 4429 ``slow_consumer`` and aborts the socket if the close cannot be
flushed. On uvicorn, whose ``send`` waits for the socket to drain, the same close follows
a send that waits longer than ``PENDING_OUTPUT_TIMEOUT``. Fan-out events
(:meth:`AuditedConsumer.send_event`) are dropped and counted from half the bound.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from channels.db import aclose_old_connections
from channels.exceptions import StopConsumer
from pydantic import BaseModel

from secure_ws import signals
from secure_ws.audit.sink import AuditSink, get_audit_sink
from secure_ws.codes import CloseCode, ErrorCode, Reason, private_close_code
from secure_ws.connection import ConnectionInfo
from secure_ws.consumer.backpressure import SLOW_CLOSE_GRACE, OutputBound
from secure_ws.consumer.dispatch import SplitDispatchConsumer
from secure_ws.consumer.fanout import install_drop_monitor
from secure_ws.consumer.messages import AuthExpiringPayload
from secure_ws.consumer.timers import ConnectionTimers
from secure_ws.consumer.traffic import ConnectionTraffic
from secure_ws.sessions.registry import ConnectionRegistry
from secure_ws.shutdown import install_daphne_shutdown

logger = logging.getLogger("secure_ws.consumer")

Message = dict[str, Any]

#: What the client reads in the ``detail`` of a close's ``error`` frame.
_CLOSE_DETAILS: dict[Reason, str] = {
    Reason.TOKEN_EXPIRED: "The access token expired.",
    Reason.SESSION_EXPIRED: "The login session expired.",
    Reason.CONNECTION_TOO_OLD: "The connection reached its maximum age; authenticate again.",
    Reason.REVOKED: "The connection was revoked.",
    Reason.IDLE_TIMEOUT: "The connection was idle for too long.",
    Reason.TOO_MANY_VIOLATIONS: "Too many invalid messages.",
    Reason.RATE_LIMITED: "Too many messages.",
    Reason.BINARY_NOT_ALLOWED: "Binary frames are not accepted.",
    Reason.TOO_LARGE: "The message is too large.",
    Reason.FORBIDDEN: "The token belongs to another user.",
    Reason.BACKEND_UNAVAILABLE: "Try again later.",
    Reason.SLOW_CONSUMER: "Too much unread output.",
}


#: Seconds between two ``aclose_old_connections()`` of one process (see below).
DB_CLEANUP_INTERVAL = 1.0
_db_cleanup_due = 0.0


async def _close_old_database_connections() -> None:
    """Close stale database connections at most once per :data:`DB_CLEANUP_INTERVAL`.

    Channels does it (a thread hop) before every handler; per connection end it was a
    measurable share of a handshake. The database thread is one per process, so once per
    interval keeps ``CONN_MAX_AGE`` honoured without a hop per connection.
    """
    global _db_cleanup_due
    now = time.monotonic()
    if now < _db_cleanup_due:
        return
    _db_cleanup_due = now + DB_CLEANUP_INTERVAL
    try:
        await aclose_old_connections()
    except Exception:
        logger.warning("closing old database connections failed")


class AuditedConsumer(SplitDispatchConsumer):
    """The open connection's outbound side and its end, shared by every secure_ws consumer.

    Subclasses decide when to close (:meth:`close_with`) and what to send
    (:meth:`send_message`, or :meth:`send_event` for fan-out that may be dropped); this
    class makes every close and every reply follow the same rules, bounds the output the
    client leaves unread, and leaves exactly one audit record when the connection ends.
    """

    #: Fan-out events (:meth:`send_event`) are dropped while more than this fraction of
    #: ``max_pending_output`` is unread, so replies still fit before the bound.
    event_drop_fraction: float = 0.5

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.connection = ConnectionInfo()
        #: Counters and limit state; set once the connection is admitted.
        self.traffic: ConnectionTraffic | None = None
        self.timers = ConnectionTimers(
            close=self.close_with, warn=self._warn_expiring, failed=self._count_handler_error
        )
        self.handler_errors = 0
        self._accepted = False
        self._closing = False
        self._cleaned = False
        self._close_code: int | None = None
        self._joined_groups: list[str] = []
        #: The connection registry holding this connection (set when it is admitted).
        self._registry: ConnectionRegistry | None = None
        #: A close the registry asked for before the accept: (code, reason).
        self._pending_end: tuple[CloseCode, Reason] | None = None
        #: This connection's unread output and its bound (None: unknown server).
        self.output: OutputBound | None = None
        # Late daphne starts (``runserver``) import daphne after ``ready()``: install here.
        install_daphne_shutdown()

    async def on_close(self, code: int) -> None:
        """Run when the connection ends, however it ends (before the audit record)."""

    # ------------------------------------------------------------------ dispatch plumbing

    async def finish(self) -> None:
        """Clean up when the consumer stops, even without ``websocket.disconnect``."""
        await self._cleanup(self._close_code or CloseCode.GOING_AWAY)

    def event_dropped(self, kind: object) -> None:
        """Log a channel-layer event that names no allowed handler (it is dropped).

        secure_ws' own events (``secure_ws.*``) reach every connection of a user, and a
        consumer that has no use for one (a folder re-check on a chat consumer) drops it
        quietly; anything else is a wiring mistake or a forged event, logged as a warning.
        """
        if isinstance(kind, str) and kind.startswith("secure_ws."):
            logger.debug(
                "ignored secure_ws event: type=%.64r connection_id=%s",
                kind,
                self.connection.connection_id,
            )
            return
        logger.warning(
            "dropped channel-layer event without a handler: type=%.64r connection_id=%s",
            kind,
            self.connection.connection_id,
        )

    def event_failed(self, kind: object) -> None:
        """Log and count a failing channel-layer event handler."""
        self._count_handler_error(f"event {kind!s:.64}")

    def channel_opened(self, name: str) -> None:
        """Record the connection's channel-layer channel (what ``kick_channel`` names)."""
        self.connection.channel_name = name
        install_drop_monitor()

    async def channel_layer_failed(self, exc: BaseException | None) -> None:
        """Close the connection: its groups and ``kick_channel`` cannot reach it (fail closed)."""
        logger.warning(
            "channel layer receive failed (%s): closing connection_id=%s",
            type(exc).__name__,
            self.connection.connection_id,
        )
        if self._accepted:
            await self.close_with(CloseCode.TRY_AGAIN_LATER, Reason.BACKEND_UNAVAILABLE)

    # ------------------------------------------------------------------ groups

    async def join_group(self, group: str) -> None:
        """Add this connection to ``group``; it leaves it again when the connection ends."""
        if group in self._joined_groups:
            return
        await self.channel_layer.group_add(group, await self.open_channel())
        self._joined_groups.append(group)

    async def leave_group(self, group: str) -> None:
        """Remove this connection from ``group`` (a no-op if it is not a member)."""
        if group not in self._joined_groups:
            return
        self._joined_groups.remove(group)
        await self.channel_layer.group_discard(group, self.channel_name)

    # ------------------------------------------------------------------ replies

    def attach_output(self) -> None:
        """Find the server's output buffer of this connection (once, when it is accepted)."""
        if self.traffic is not None:
            self.output = OutputBound.attach(
                self.base_send, self.connection, self.traffic.limits, self.event_drop_fraction
            )

    @staticmethod
    def encode_frame(
        type: str, payload: BaseModel | dict[str, Any] | None = None, id: str | None = None
    ) -> str:
        """Return the JSON text of ``{"type", "id"?, "payload"}``."""
        if isinstance(payload, BaseModel):
            payload = payload.model_dump(mode="json", exclude_none=True)
        frame: dict[str, Any] = {"type": type}
        if id is not None:
            frame["id"] = id
        frame["payload"] = {} if payload is None else payload
        return json.dumps(frame, separators=(",", ":"), allow_nan=False)

    async def send_message(
        self, type: str, payload: BaseModel | dict[str, Any] | None = None, id: str | None = None
    ) -> None:
        """Send ``{"type", "id"?, "payload"}`` to the client (dropped once closing).

        Past ``max_pending_output`` unread bytes, or after a send that waited
        ``pending_output_timeout`` seconds, the frame is not sent and the connection is
        closed instead (:meth:`close_slow_consumer`).
        """
        if self._closing:
            return
        text = self.encode_frame(type, payload, id)
        output, traffic = self.output, self.traffic
        if output is not None:
            # The hot path: a few attribute reads on the transport, no syscall, no Redis.
            pending = output.pending()
            if pending > output.max_pending:
                await self.close_slow_consumer(pending)
                return
            if pending and output.blocking:
                # The server's send may wait for the client to read: bound that wait.
                try:
                    async with asyncio.timeout(output.timeout):
                        sent = await self._send_text(text)
                except TimeoutError:
                    await self.close_slow_consumer(output.pending())
                    return
                if sent and traffic is not None:
                    traffic.sent(len(text))
                return
        if await self._send_text(text) and traffic is not None:
            traffic.sent(len(text))

    async def _send_text(self, text: str) -> bool:
        try:
            await self.base_send({"type": "websocket.send", "text": text})
        except OSError:
            # The client is gone (uvicorn raises ClientDisconnected, an OSError); its
            # websocket.disconnect is queued and ends the connection: nothing to report.
            self._closing = True
            return False
        return True

    async def send_event(
        self, type: str, payload: BaseModel | dict[str, Any] | None = None
    ) -> bool:
        """Send a fan-out event, or drop and count it while the client is not reading.

        A subscriber that stalls must not make the server buffer every event of its
        groups: from :attr:`event_drop_fraction` of ``max_pending_output`` unread, events
        are dropped, counted on ``ConnectionInfo.events_dropped`` (in the close's audit
        row and the ``secure_ws_events_dropped_total`` metric) and the first drop is a
        ``slow_consumer`` security event. Clients see the gap in ``seq`` and ``resync``.

        Returns:
            Whether the event was sent.
        """
        if self._closing:
            return False
        pending = self.output.drop_event() if self.output is not None else 0
        if pending:
            if self.connection.events_dropped == 1:
                self.security_event(
                    Reason.SLOW_CONSUMER.value, f"events dropped: {pending} bytes unread"
                )
            return False
        await self.send_message(type, payload)
        return True

    async def close_slow_consumer(self, pending: int) -> None:
        """Close a client that does not read with 4429 ``slow_consumer``; free its socket.

        The ``error`` frame and the close queue behind the unread output, so they reach
        the client only if it reads within :data:`SLOW_CLOSE_GRACE` seconds; then the
        transport is aborted, dropping its buffer, whatever the client does.
        """
        if self._closing:
            return
        code = CloseCode.RATE_LIMITED
        self._closing = True
        self._close_code = int(code)
        self.connection.close_reason = Reason.SLOW_CONSUMER.value
        self.timers.cancel()
        logger.warning(
            "slow consumer: %d bytes unread, closing connection_id=%s",
            pending,
            self.connection.connection_id,
        )
        self.security_event(
            Reason.SLOW_CONSUMER.value, f"close {int(code)}: {pending} bytes unread"
        )
        error = self.encode_frame(
            "error",
            {"code": Reason.SLOW_CONSUMER.value, "detail": _CLOSE_DETAILS[Reason.SLOW_CONSUMER]},
        )
        buffer = self.output.buffer if self.output is not None else None
        try:
            async with asyncio.timeout(SLOW_CLOSE_GRACE):
                await self.base_send({"type": "websocket.send", "text": error})
                await self.close_transport(int(code), Reason.SLOW_CONSUMER.value)
        except TimeoutError:
            if buffer is not None:
                buffer.abort()
            return
        except Exception:
            logger.warning(
                "closing a slow consumer failed: connection_id=%s", self.connection.connection_id
            )
        if buffer is not None:
            buffer.abort_later(SLOW_CLOSE_GRACE)

    async def send_error(
        self,
        code: ErrorCode | Reason,
        detail: str = "",
        errors: list[dict[str, object]] | None = None,
        client_id: str | None = None,
    ) -> None:
        """Send an ``error`` frame; ``detail`` is a fixed text, never client input."""
        payload: dict[str, Any] = {"code": code.value, "detail": detail}
        if errors:
            payload["errors"] = errors
        await self.send_message("error", payload, id=client_id)

    async def close_with(
        self, code: CloseCode, reason: Reason, detail: str = "", client_id: str | None = None
    ) -> None:
        """Close an open connection: an ``error`` frame with ``reason``, then the close.

        The frame comes first because daphne drops close reasons (daphne#374).
        """
        if self._closing:
            return
        await self.send_error(reason, detail or _CLOSE_DETAILS.get(reason, ""), client_id=client_id)
        if self._closing:
            return  # that frame found a slow consumer (now closed) or a client gone
        self._closing = True
        self._close_code = int(code)
        self.connection.close_reason = reason.value
        self.timers.cancel()
        if code != CloseCode.NORMAL:
            self.security_event(reason.value, f"close {int(code)}")
        await self.close_transport(int(code), reason.value)

    async def close_transport(self, code: int, reason: str) -> None:
        """Send the close; fall back to the 4xxx stand-in when the server refuses ``code``.

        daphne (autobahn) refuses every standard code but 1000, see
        :func:`~secure_ws.codes.private_close_code`.
        """
        try:
            await self.close(code=code, reason=reason)
        except Exception:
            fallback = private_close_code(code)
            if fallback == code:
                raise
            logger.debug("server refused close code %s; closing with %s", code, fallback)
            self._close_code = fallback
            await self.close(code=fallback, reason=reason)

    def security_event(self, kind: str, detail: str) -> None:
        """Log, audit and signal one security event of this connection (never raw input)."""
        info = self.connection
        logger.info("security event %s: connection_id=%s", kind, info.connection_id)
        with self._audit_guard():
            self._audit_sink().security_event(info, kind, detail)
        signals.send_soon(signals.security_event, info=info, kind=kind, detail=detail)

    def _count_handler_error(self, where: str) -> None:
        self.handler_errors += 1
        logger.exception("%s failed: connection_id=%s", where, self.connection.connection_id)
        with self._audit_guard():
            self._audit_sink().security_event(self.connection, ErrorCode.SERVER_ERROR.value, where)

    def _audit_sink(self) -> AuditSink:
        return get_audit_sink()

    @contextmanager
    def _audit_guard(self) -> Iterator[None]:
        """Log an audit sink failure and carry on: audit never decides a connection."""
        try:
            yield
        except Exception:
            logger.exception("audit sink failed: connection_id=%s", self.connection.connection_id)

    # ------------------------------------------------------------------ the end

    async def _warn_expiring(self, expires_in: float) -> None:
        await self.send_message("auth.expiring", AuthExpiringPayload(expires_in=expires_in))

    async def websocket_disconnect(self, message: Message) -> None:
        """The socket is gone: clean up (groups, timers, audit) and stop the consumer."""
        code = message.get("code")
        await self._cleanup(self._close_code or (code if isinstance(code, int) else 1000))
        raise StopConsumer()

    async def _cleanup(self, code: int) -> None:
        if self._cleaned:
            return
        self._cleaned = True
        self._closing = True
        if self._registry is not None:
            self._registry.remove(self)
            self._registry = None
        await self.timers.stop()
        for group in self._joined_groups:
            try:
                await self.channel_layer.group_discard(group, self.channel_name)
            except Exception:
                logger.warning(
                    "group_discard failed: connection_id=%s", self.connection.connection_id
                )
        self._joined_groups.clear()
        if self._accepted:
            try:
                await self.on_close(code)
            except Exception:
                self._count_handler_error("on_close")
            with self._audit_guard():
                self._audit_sink().connection_closed(self.connection, int(code))
            await signals.send(signals.connection_closed, info=self.connection, close_code=code)
        await _close_old_database_connections()
