"""``SecureJsonWebsocketConsumer``: the validated base class every secure_ws endpoint uses.

What runs before any handler (in this order, for every text frame):

1. size (``MAX_MESSAGE_BYTES``, before anything is parsed; far over closes 1009),
2. the per-connection message and byte buckets (``rate_limited``, then 4429),
3. one pydantic pass over the envelope and payload (:mod:`secure_ws.consumer.messages`),
4. the message type's permissions (``forbidden``),
5. the ``handle_<type>`` coroutine.

Client frames never go through Channels' ``dispatch()`` type-to-method mapping: a client
that sends ``{"type": "websocket.disconnect"}`` gets ``unknown_type``, not an internal
method. Channel-layer events keep Channels' naming but cannot reach client handlers,
transport handlers or the consumer's own methods.

Steps 1-2 and the message and byte counters live in :mod:`secure_ws.consumer.traffic`, the token
expiry and idle timers in :mod:`secure_ws.consumer.timers`, and how replies and closes are sent,
audited and cleaned up (an ``error`` frame before every close, because daphne drops
close reasons, daphne#374) in :mod:`secure_ws.consumer.audited`. This module decides what a
connection and its messages must pass.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

from pydantic import BaseModel

from secure_ws import signals
from secure_ws.codes import APP_SUBPROTOCOL, CloseCode, ErrorCode, Reason
from secure_ws.conf import get_settings
from secure_ws.connection import SCOPE_KEY, ConnectionInfo, get_connection_info
from secure_ws.consumer.audited import AuditedConsumer
from secure_ws.consumer.dispatch import collect_event_handlers, event_handler
from secure_ws.consumer.limits import SETTING_LIMITS, ConnectionLimits, shared_limits
from secure_ws.consumer.messages import (
    AckPayload,
    AuthExpiringPayload,
    AuthRefreshPayload,
    ClientMessage,
    EmptyPayload,
    ErrorPayload,
    FrameRejected,
    MessageRegistry,
    extract_client_id,
    message_handler,
)
from secure_ws.consumer.permissions import BasePermission, IsAuthenticated
from secure_ws.consumer.traffic import VIOLATION_CODES, ConnectionTraffic
from secure_ws.exceptions import BackendUnavailable, MessageRejected, Refused
from secure_ws.gate.refusal import refuse
from secure_ws.sessions.pubsub import ensure_subscribed

Message = dict[str, Any]


class SecureJsonWebsocketConsumer(AuditedConsumer):
    """Base class for JSON WebSocket endpoints behind :func:`secure_ws.secure_websocket`.

    Subclass it, declare client message types with
    :func:`~secure_ws.consumer.messages.message_handler` on ``handle_<type>`` coroutines, and reply
    with :meth:`send_message`. Each limit below is a class attribute: ``None`` reads the
    ``SECURE_WS`` setting of the same name when a connection opens.

    It refuses to run unless the gate authenticated the scope, and refuses clients that do
    not offer the ``secure-ws.v1`` subprotocol (it never selects a ``bearer.`` entry).
    """

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
    _permissions: ClassVar[dict[str, tuple[BasePermission, ...]]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._collect_messages()

    @classmethod
    def _collect_messages(cls) -> None:
        cls.message_registry = MessageRegistry.collect(cls)
        defaults = tuple(p() if isinstance(p, type) else p for p in cls.default_permissions)
        cls._permissions = {
            name: defaults if spec.permissions is None else spec.permissions
            for name, spec in cls.message_registry.specs.items()
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits: ConnectionLimits | None = None

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

    async def receive_bytes(self, data: bytes) -> None:
        """Handle a binary frame of a consumer with ``allow_binary = True``.

        Raises:
            MessageRejected: to answer the frame with an ``error``.
        """
        raise MessageRejected(ErrorCode.INVALID_MESSAGE, "Binary frames are not handled")

    # ------------------------------------------------------------------ handshake

    async def websocket_connect(self, message: Message) -> None:
        """Check the gate's work, register for revocation, accept with ``secure-ws.v1``."""
        try:
            await self._admit()
        except Refused as refusal:
            await self._refuse(refusal)
            return
        await self.accept(APP_SUBPROTOCOL)
        self._accepted = True
        self.attach_output()
        info = self.connection
        with self._audit_guard():
            self._audit_sink().connection_opened(info)
        await signals.send(signals.connection_accepted, info=info)
        if self._pending_end is not None:
            # Revoked (or the subscription lost) between registration and accept.
            await self.close_with(*self._pending_end)
            return
        traffic = self.traffic
        assert traffic is not None
        warning = traffic.limits.token_expiry_warning
        if info.token_exp is not None:
            self.timers.watch_expiry(info.token_exp, warning, info.expiry_reason)
        else:
            # No credential expiry (anonymous, or a credential without one): a bounded age.
            max_age = get_settings().MAX_CONNECTION_AGE
            self.timers.watch_expiry(info.opened_at + max_age, warning, Reason.CONNECTION_TOO_OLD)
        if traffic.limits.idle_timeout is not None:
            self.timers.watch_idle(traffic.limits.idle_timeout, lambda: traffic.last_activity)
        try:
            await self.on_open()
        except Exception:
            self._count_handler_error("on_open")

    async def _admit(self) -> None:
        scope = self.scope
        info = scope.get(SCOPE_KEY)
        if not isinstance(info, ConnectionInfo):
            self.connection = get_connection_info(scope)
            raise Refused(Reason.NOT_AUTHENTICATED, "consumer is not behind secure_websocket()")
        self.connection = info
        user = scope.get("user")
        if user is not None and user.is_authenticated:
            if info.user_id is None or str(user.pk) != str(info.user_id):
                raise Refused(Reason.NOT_AUTHENTICATED, "scope user does not match the gate's")
        elif get_settings().REQUIRE_AUTHENTICATION or info.user_id is not None:
            raise Refused(Reason.NOT_AUTHENTICATED, "the gate did not authenticate the scope")
        if APP_SUBPROTOCOL not in scope.get("subprotocols", ()):
            raise Refused(Reason.SUBPROTOCOL_REQUIRED, "client did not offer secure-ws.v1")
        if self.channel_layer is None:
            raise Refused(Reason.BACKEND_UNAVAILABLE, "no channel layer")
        self.limits = self.get_limits()
        self.traffic = ConnectionTraffic(info, self.limits)
        await self.check_connection()
        for group in self.get_groups():
            try:
                await self.channel_layer.group_add(group, await self.open_channel())
            except Exception as exc:
                raise Refused(Reason.BACKEND_UNAVAILABLE, "channel layer group_add failed") from exc
            self._joined_groups.append(group)
        # Last, so that nothing after it can refuse: from here a revocation reaches it.
        try:
            registry = await ensure_subscribed()
        except BackendUnavailable as exc:
            raise Refused(Reason.BACKEND_UNAVAILABLE, "revocation subscription down") from exc
        registry.add(self)
        self._registry = registry

    async def _refuse(self, refusal: Refused) -> None:
        # The same answer as a gate refusal (HTTP 403, or accept + error + close).
        self._closing = True
        await refuse(self.scope, None, self.base_send, refusal, connect_received=True)

    # ------------------------------------------------------------------ frames

    async def websocket_receive(self, message: Message) -> None:
        """Check, validate and dispatch one client frame (the per-message hot path)."""
        traffic = self.traffic
        if self._closing or not self._accepted or traffic is None:
            return
        text = message.get("text")
        if text is None:
            await self._receive_binary(traffic, message.get("bytes") or b"")
            return
        nbytes = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
        if not await self._admit_frame(traffic, nbytes, text):
            return
        try:
            decoded = self.message_registry.decode(text, max_depth=traffic.limits.max_json_depth)
        except FrameRejected as exc:
            await self.reject(exc, exc.client_id)
            return
        except Exception:
            # A decoder bug must not end the connection (or the server) either.
            self._count_handler_error("decode")
            await self.send_error(ErrorCode.SERVER_ERROR, "Internal error")
            return
        await self._dispatch_message(decoded)

    async def _admit_frame(self, traffic: ConnectionTraffic, nbytes: int, text: str | None) -> bool:
        verdict = traffic.received(nbytes)
        if verdict.close is not None:
            await self.close_with(*verdict.close)
        elif verdict.rejection is not None:
            # Echo the client id of a rate-limited frame; an oversized one is not parsed.
            rate_limited = verdict.rejection.code == ErrorCode.RATE_LIMITED
            client_id = extract_client_id(text) if rate_limited and text is not None else None
            await self.reject(verdict.rejection, client_id, violation=verdict.violation)
        return verdict.admitted

    async def _receive_binary(self, traffic: ConnectionTraffic, data: bytes) -> None:
        if not traffic.limits.allow_binary:
            traffic.received(len(data))
            await self.close_with(CloseCode.UNSUPPORTED_DATA, Reason.BINARY_NOT_ALLOWED)
            return
        if not await self._admit_frame(traffic, len(data), None):
            return
        try:
            await self.receive_bytes(data)
        except MessageRejected as exc:
            await self.reject(exc)
        except Exception:
            self._count_handler_error("receive_bytes")
            await self.send_error(ErrorCode.SERVER_ERROR, "Internal error")

    async def _dispatch_message(self, message: ClientMessage[Any]) -> None:
        spec = self.message_registry.specs[message.type]
        try:
            for permission in self._permissions[message.type]:
                allowed = permission.has_permission(self, message)
                if not isinstance(allowed, bool):
                    allowed = await allowed
                if not allowed:
                    await self.reject(MessageRejected(ErrorCode.FORBIDDEN, "Forbidden"), message.id)
                    return
            await getattr(self, spec.handler_name)(message)
        except MessageRejected as exc:
            await self.reject(exc, message.id)
        except Exception:
            self._count_handler_error(spec.handler_name)
            await self.send_error(ErrorCode.SERVER_ERROR, "Internal error", client_id=message.id)

    # ------------------------------------------------------------------ replies

    async def reject(
        self, exc: MessageRejected, client_id: str | None = None, *, violation: bool = True
    ) -> None:
        """Answer a refused message with ``error``, audit it and count the violation."""
        await self.send_error(exc.code, exc.detail, exc.errors, client_id)
        if exc.code in VIOLATION_CODES:
            self.security_event(exc.code.value, exc.detail)
            if violation and self.traffic is not None and self.traffic.violation():
                await self.close_with(CloseCode.POLICY_VIOLATION, Reason.TOO_MANY_VIOLATIONS)

    # ------------------------------------------------------------------ lifecycle

    @event_handler
    async def secure_ws_revoke(self, event: Message) -> None:
        """Channel-layer event ``secure_ws.revoke``: close with 4403 ``revoked``."""
        await self.close_with(CloseCode.FORBIDDEN, Reason.REVOKED)

    async def end_connection(self, code: CloseCode, reason: Reason) -> None:
        """Close on the connection registry's word (revoked, or its subscription lost).

        Before the accept, the close is remembered and happens right after it.
        """
        if not self._accepted:
            if self._pending_end is None:
                self._pending_end = (code, reason)
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
        from secure_ws.gate.credentials import validate_access_token

        try:
            validated = await validate_access_token(message.payload.token.get_secret_value())
        except Refused as exc:
            if exc.reason == Reason.BACKEND_UNAVAILABLE:
                raise MessageRejected(ErrorCode.SERVER_ERROR, "Try again later") from None
            raise MessageRejected(ErrorCode.INVALID_MESSAGE, "Token not accepted") from None
        info = self.connection
        if info.user_id is None or str(validated.user.pk) != str(info.user_id):
            await self.close_with(CloseCode.FORBIDDEN, Reason.FORBIDDEN, client_id=message.id)
            return
        await self._move_session(validated.session_id)
        info.token_exp = validated.exp
        info.token_jti = validated.jti
        info.expiry_reason = Reason.TOKEN_EXPIRED
        limits = self.limits
        assert limits is not None
        self.timers.watch_expiry(validated.exp, limits.token_expiry_warning, Reason.TOKEN_EXPIRED)
        expires_in = round(max(0.0, validated.exp - time.time()), 3)
        await self.send_message("ack", {"expires_in": expires_in}, id=message.id)

    async def _move_session(self, session_id: str | None) -> None:
        info = self.connection
        if session_id == info.session_id or not session_id:
            return
        info.session_id = session_id
        if self._registry is not None:
            self._registry.move_session(self, session_id)


SecureJsonWebsocketConsumer._collect_messages()
SecureJsonWebsocketConsumer.event_handlers = collect_event_handlers(SecureJsonWebsocketConsumer)
