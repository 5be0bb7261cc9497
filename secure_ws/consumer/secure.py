"""``SecureJsonWebsocketConsumer``: the one base class every secure_ws endpoint subclasses.

A connection, top down: :func:`secure_ws.consumer.loop.serve` (the consumer's
``__call__``) feeds client messages to ``websocket_connect`` / ``websocket_receive`` /
``websocket_disconnect`` here and channel-layer events to ``@event_handler`` methods; the
per-connection state (identity, limits, counters, timers, groups, audit handle) is one
slotted :class:`~secure_ws.consumer.state.ConnectionState` on ``self.state``; frames and
closes go out through :mod:`secure_ws.consumer.outbound`.

What runs before any handler (in this order, for every text frame):

1. size (``MAX_MESSAGE_BYTES``, before anything is parsed; far over closes 1009),
2. the per-connection message and byte buckets (``rate_limited``, then 4429),
3. one pydantic pass over the envelope and payload (:mod:`secure_ws.consumer.messages`),
4. the message type's permissions (``forbidden``),
5. the ``handle_<type>`` coroutine.

Client frames never go through Channels' ``dispatch()`` type-to-method mapping: a client
that sends ``{"type": "websocket.disconnect"}`` gets ``unknown_type``, not an internal
method. Channel-layer events keep Channels' naming but reach only ``@event_handler``
methods. An accepted connection ends with exactly one ``connection_closed`` audit record.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from pydantic import BaseModel

from secure_ws import signals
from secure_ws.codes import CloseCode, ErrorCode, Reason
from secure_ws.conf import get_settings
from secure_ws.connection import ConnectionInfo
from secure_ws.consumer import admission, frames, loop, outbound
from secure_ws.consumer.backpressure import OutputBound
from secure_ws.consumer.limits import SETTING_LIMITS, ConnectionLimits, shared_limits
from secure_ws.consumer.loop import collect_event_handlers, event_handler
from secure_ws.consumer.messages import (
    AckPayload,
    AuthExpiringPayload,
    AuthRefreshPayload,
    ClientMessage,
    EmptyPayload,
    ErrorPayload,
    MessageRegistry,
    message_handler,
)
from secure_ws.consumer.permissions import BasePermission, IsAuthenticated
from secure_ws.consumer.state import ConnectionState
from secure_ws.consumer.traffic import VIOLATION_CODES
from secure_ws.exceptions import MessageRejected
from secure_ws.shutdown import install_daphne_shutdown

logger = logging.getLogger("secure_ws.consumer")

Message = dict[str, Any]


class SecureJsonWebsocketConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]
    """Base class for JSON WebSocket endpoints behind :func:`secure_ws.secure_websocket`.

    Subclass it, declare client message types with
    :func:`~secure_ws.consumer.messages.message_handler` on ``handle_<type>`` coroutines,
    reply with :meth:`send_message` (:meth:`send_event` for fan-out that may be dropped)
    and close with :meth:`close_with`. Each limit below is a class attribute: ``None``
    reads the ``SECURE_WS`` setting of the same name when a connection opens.

    It refuses to run unless the gate authenticated the scope, and refuses clients that do
    not offer the ``secure-ws.v1`` subprotocol (it never selects a ``bearer.`` entry).
    """

    #: Fan-out events (:meth:`send_event`) are dropped while more than this fraction of
    #: ``max_pending_output`` is unread, so replies still fit before the bound.
    event_drop_fraction: float = 0.5

    #: Largest accepted text frame in bytes (``MAX_MESSAGE_BYTES``).
    max_message_bytes: int | None = None
    #: Deepest accepted JSON nesting (``MAX_JSON_DEPTH``).
    max_json_depth: int | None = None
    #: Whether binary frames reach :meth:`receive_bytes`; otherwise close 1003 (``ALLOW_BINARY``).
    allow_binary: bool | None = None
    #: Messages per second per connection (``MESSAGE_RATE``).
    message_rate: float | None = None
    #: Messages a connection may send in one burst (``MESSAGE_BURST``).
    message_burst: int | None = None
    #: Bytes per second per connection (``BYTE_RATE``).
    byte_rate: int | None = None
    #: Rate-limited messages in a row before close 4429 (``RATE_LIMIT_CLOSE_AFTER``).
    rate_limit_close_after: int | None = None
    #: Violations inside the window that close the connection with 1008 (``VIOLATION_LIMIT``).
    violation_limit: int | None = None
    #: Length of the violation window in seconds (``VIOLATION_WINDOW``).
    violation_window: float | None = None
    #: Seconds without a client message before close 4408 (``IDLE_TIMEOUT``; None: never).
    idle_timeout: float | None = None
    #: Seconds before the token's ``exp`` that ``auth.expiring`` is sent (``TOKEN_EXPIRY_WARNING``).
    token_expiry_warning: float | None = None
    #: Unread output in bytes before close 4429 ``slow_consumer`` (``MAX_PENDING_OUTPUT``).
    max_pending_output: int | None = None
    #: Seconds a send may wait for a client that does not read (``PENDING_OUTPUT_TIMEOUT``).
    pending_output_timeout: float | None = None
    #: Frames over ``max_message_bytes`` times this close with 1009 instead of ``too_large``.
    oversize_close_factor: int = 4
    #: Permissions of message types declared without ``permissions=``.
    default_permissions: tuple[type[BasePermission] | BasePermission, ...] = (IsAuthenticated,)
    #: Server message types and their payload schemas (for ``ws_schema`` and the docs).
    server_messages: ClassVar[dict[str, type[BaseModel]]] = {
        "ack": AckPayload,
        "pong": EmptyPayload,
        "error": ErrorPayload,
        "auth.expiring": AuthExpiringPayload,
    }

    #: The declared client message types, collected when the class is created.
    message_registry: ClassVar[MessageRegistry]
    #: Each message type's permissions (``default_permissions`` where none were declared).
    permissions_by_type: ClassVar[dict[str, tuple[BasePermission, ...]]]
    #: Method names channel-layer events may run (collected from :func:`event_handler`).
    event_handlers: ClassVar[frozenset[str]] = frozenset()
    #: The channel-layer channel, once :meth:`open_channel` made it ("" until then).
    channel_name: str = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._collect_messages()
        cls.event_handlers = collect_event_handlers(cls)

    @classmethod
    def _collect_messages(cls) -> None:
        cls.message_registry = MessageRegistry.collect(cls)
        defaults = tuple(p() if isinstance(p, type) else p for p in cls.default_permissions)
        cls.permissions_by_type = {
            name: defaults if spec.permissions is None else spec.permissions
            for name, spec in cls.message_registry.specs.items()
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Everything this connection carries (one slotted object, see its module).
        self.state = ConnectionState(close=self.close_with, warn=self._warn_expiring)
        # Late daphne starts (``runserver``) import daphne after ``ready()``: install here.
        install_daphne_shutdown()

    async def __call__(self, scope: Message, receive: Any, send: Any) -> None:
        """Serve one connection (the receive loop that keeps client frames from events)."""
        await loop.serve(self, scope, receive, send)

    @property
    def connection(self) -> ConnectionInfo:
        """Who this connection is: the gate's record, also the audit record."""
        return self.state.info

    @property
    def limits(self) -> ConnectionLimits | None:
        """This connection's limits (None until it is admitted)."""
        return self.state.limits

    # ------------------------------------------------------------------ configuration

    def get_limits(self) -> ConnectionLimits:
        """Return this connection's limits: class attributes over ``SECURE_WS`` settings.

        Called once when the connection opens, so settings are read lazily and a changed
        setting reaches the next connection.
        """
        settings = get_settings()
        values: dict[str, Any] = {}
        for name in SETTING_LIMITS:
            value = getattr(self, name)
            values[name] = getattr(settings, name.upper()) if value is None else value
        return shared_limits(**values, oversize_close_factor=self.oversize_close_factor)

    def get_groups(self) -> list[str]:
        """Return the channel-layer groups this connection joins before it is accepted.

        ``groups`` by default. Revocation needs no group: the connection is registered in
        its process's connection registry (:mod:`secure_ws.sessions`) instead.
        """
        return list(self.groups or [])

    # ------------------------------------------------------------------ hooks

    async def check_connection(self) -> None:
        """Refuse this connection by raising :class:`~secure_ws.exceptions.Refused`.

        Runs after the base checks, before the connection is accepted.
        """

    async def on_open(self) -> None:
        """Run once the connection is accepted."""

    async def on_close(self, code: int) -> None:
        """Run when an accepted connection ends, however it ends (before the audit record)."""

    async def receive_bytes(self, data: bytes) -> None:
        """Handle a binary frame of a consumer with ``allow_binary = True``.

        Raises:
            MessageRejected: to answer the frame with an ``error``.
        """
        raise MessageRejected(ErrorCode.INVALID_MESSAGE, "Binary frames are not handled")

    # ------------------------------------------------------------------ client messages

    async def websocket_connect(self, message: Message) -> None:
        """Check the gate's work, register for revocation, accept with ``secure-ws.v1``."""
        await admission.connect(self)

    async def websocket_receive(self, message: Message) -> None:
        """Check, validate and dispatch one client frame (the per-message hot path)."""
        await frames.receive(self, message)

    # ------------------------------------------------------------------ replies

    async def reject(
        self, exc: MessageRejected, client_id: str | None = None, *, violation: bool = True
    ) -> None:
        """Answer a refused message with ``error``, audit it and count the violation."""
        await self.send_error(exc.code, exc.detail, exc.errors, client_id)
        if exc.code in VIOLATION_CODES:
            self.security_event(exc.code.value, exc.detail)
            traffic = self.state.traffic
            if violation and traffic is not None and traffic.violation():
                await self.close_with(CloseCode.POLICY_VIOLATION, Reason.TOO_MANY_VIOLATIONS)

    async def send_message(
        self, type: str, payload: BaseModel | dict[str, Any] | None = None, id: str | None = None
    ) -> None:
        """Send ``{"type", "id"?, "payload"}`` to the client (dropped once closing).

        Past ``max_pending_output`` unread bytes, or after a send that waited
        ``pending_output_timeout`` seconds, the frame is not sent and the connection is
        closed 4429 ``slow_consumer`` instead.
        """
        if not self.state.closing:
            await outbound.send_text(self, outbound.encode_frame(type, payload, id))

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
        return await outbound.send_event(self, type, payload)

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

    def attach_output(self) -> None:
        """Find the server's output buffer of this connection (once, when it is accepted)."""
        state = self.state
        if state.traffic is not None:
            state.output = OutputBound.attach(
                self.base_send, state.info, state.traffic.limits, self.event_drop_fraction
            )

    def security_event(self, kind: str, detail: str) -> None:
        """Log, audit and signal one security event of this connection (never raw input)."""
        self.state.security_event(kind, detail)

    # ------------------------------------------------------------------ closing

    async def close_with(
        self, code: CloseCode, reason: Reason, detail: str = "", client_id: str | None = None
    ) -> None:
        """Close an open connection: an ``error`` frame with ``reason``, then the close.

        The frame comes first because daphne drops close reasons (daphne#374).
        """
        await outbound.close_with(self, code, reason, detail, client_id)

    async def websocket_disconnect(self, message: Message) -> None:
        """The socket is gone: give its cap slot back, clean up, and stop the consumer."""
        release_slot = self.state.info.release_slot
        if release_slot is not None:
            await release_slot()
        code = message.get("code")
        await self._cleanup(self.state.close_code or (code if isinstance(code, int) else 1000))
        raise StopConsumer()

    async def finish(self) -> None:
        """Clean up when the loop stops, even without ``websocket.disconnect``."""
        await self._cleanup(self.state.close_code or CloseCode.GOING_AWAY)

    async def _cleanup(self, code: int) -> None:
        state = self.state
        if state.cleaned:
            return
        state.cleaned = state.closing = True
        if state.registry is not None:
            state.registry.remove(self)
            state.registry = None
        await state.timers.stop()
        for group in state.groups:
            try:
                await self.channel_layer.group_discard(group, self.channel_name)
            except Exception:
                logger.warning("group_discard failed: connection_id=%s", state.info.connection_id)
        state.groups.clear()
        if state.accepted:
            try:
                await self.on_close(code)
            except Exception:
                state.handler_error("on_close")
            state.closed(code)
            await signals.send(signals.connection_closed, info=state.info, close_code=code)

    async def _warn_expiring(self, expires_in: float) -> None:
        await self.send_message("auth.expiring", AuthExpiringPayload(expires_in=expires_in))

    # ------------------------------------------------------------------ groups and events

    async def join_group(self, group: str) -> None:
        """Add this connection to ``group``; it leaves it again when the connection ends."""
        groups = self.state.groups
        if group in groups:
            return
        await self.channel_layer.group_add(group, await self.open_channel())
        groups.append(group)

    async def leave_group(self, group: str) -> None:
        """Remove this connection from ``group`` (a no-op if it is not a member)."""
        groups = self.state.groups
        if group not in groups:
            return
        groups.remove(group)
        await self.channel_layer.group_discard(group, self.channel_name)

    async def open_channel(self) -> str:
        """Return this connection's channel-layer channel, creating it on first use."""
        return await loop.open_channel(self)

    def deliver_event(self, event: Message) -> None:
        """Queue ``event`` for this connection's loop (server code only: the registry)."""
        loop.deliver(self.state, event)

    # ------------------------------------------------------------------ lifecycle

    @event_handler
    async def secure_ws_revoke(self, event: Message) -> None:
        """Channel-layer event ``secure_ws.revoke``: close with 4403 ``revoked``."""
        await self.close_with(CloseCode.FORBIDDEN, Reason.REVOKED)

    async def end_connection(self, code: CloseCode, reason: Reason) -> None:
        """Close on the connection registry's word (revoked, or its subscription lost).

        Before the accept, the close is remembered and happens right after it.
        """
        state = self.state
        if not state.accepted:
            if state.pending_end is None:
                state.pending_end = (code, reason)
            return
        await self.close_with(code, reason)

    # ------------------------------------------------------------------ client types

    @message_handler("ping", permissions=[IsAuthenticated])
    async def handle_ping(self, message: ClientMessage[EmptyPayload]) -> None:
        """Answer ``pong``: a liveness check that also exercises the whole pipeline."""
        await self.send_message("pong", None, id=message.id)

    @message_handler("auth.refresh", schema=AuthRefreshPayload, permissions=[IsAuthenticated])
    async def handle_auth_refresh(self, message: ClientMessage[AuthRefreshPayload]) -> None:
        """Move the connection's expiry with a new access token of the same user."""
        await admission.refresh(self, message)


SecureJsonWebsocketConsumer._collect_messages()
SecureJsonWebsocketConsumer.event_handlers = collect_event_handlers(SecureJsonWebsocketConsumer)
