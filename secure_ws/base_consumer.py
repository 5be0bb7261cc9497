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
"""

from __future__ import annotations

import json
import logging
from typing import Any

from channels.db import aclose_old_connections
from channels.exceptions import StopConsumer
from pydantic import BaseModel

from secure_ws import signals
from secure_ws.audit.sink import get_audit_sink
from secure_ws.codes import CloseCode, ErrorCode, Reason, private_close_code
from secure_ws.connection import ConnectionInfo
from secure_ws.dispatch import SplitDispatchConsumer
from secure_ws.messages import AuthExpiringPayload
from secure_ws.shutdown import install_daphne_shutdown
from secure_ws.timers import ConnectionTimers
from secure_ws.traffic import ConnectionTraffic

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
}


class AuditedConsumer(SplitDispatchConsumer):
    """The open connection's outbound side and its end, shared by every secure_ws consumer.

    Subclasses decide when to close (:meth:`close_with`) and what to send
    (:meth:`send_message`); this class makes every close and every reply follow the same
    rules and leaves exactly one audit record when the connection ends.
    """

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

    async def channel_layer_failed(self, exc: BaseException | None) -> None:
        """Close the connection: without the layer, revocation cannot reach it (fail closed)."""
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
        await self.channel_layer.group_add(group, self.channel_name)
        self._joined_groups.append(group)

    async def leave_group(self, group: str) -> None:
        """Remove this connection from ``group`` (a no-op if it is not a member)."""
        if group not in self._joined_groups:
            return
        self._joined_groups.remove(group)
        await self.channel_layer.group_discard(group, self.channel_name)

    # ------------------------------------------------------------------ replies

    async def send_message(
        self, type: str, payload: BaseModel | dict[str, Any] | None = None, id: str | None = None
    ) -> None:
        """Send ``{"type", "id"?, "payload"}`` to the client (dropped once closing)."""
        if self._closing:
            return
        if isinstance(payload, BaseModel):
            payload = payload.model_dump(mode="json", exclude_none=True)
        frame: dict[str, Any] = {"type": type}
        if id is not None:
            frame["id"] = id
        frame["payload"] = {} if payload is None else payload
        text = json.dumps(frame, separators=(",", ":"), allow_nan=False)
        await self.base_send({"type": "websocket.send", "text": text})
        if self.traffic is not None:
            self.traffic.sent(len(text))

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
        self._closing = True
        self._close_code = int(code)
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
        self._audit("security_event", info, kind, detail)
        signals.security_event.send_robust(sender=None, info=info, kind=kind, detail=detail)

    def _count_handler_error(self, where: str) -> None:
        self.handler_errors += 1
        logger.exception("%s failed: connection_id=%s", where, self.connection.connection_id)
        self._audit("security_event", self.connection, ErrorCode.SERVER_ERROR.value, where)

    def _audit(self, method: str, *args: Any) -> None:
        try:
            getattr(get_audit_sink(), method)(*args)
        except Exception:
            # Audit failures never decide a connection; keep serving.
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
            self._audit("connection_closed", self.connection, int(code))
            signals.connection_closed.send_robust(
                sender=None, info=self.connection, close_code=code
            )
        try:
            await aclose_old_connections()
        except Exception:
            logger.warning("closing old database connections failed")
