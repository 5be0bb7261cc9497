"""``SecureJsonWebsocketConsumer``: the validated base class every secure_ws endpoint uses.

What runs before any handler (in this order, for every text frame):

1. size (``MAX_MESSAGE_BYTES``, before anything is parsed; far over closes 1009),
2. the per-connection message and byte buckets (``rate_limited``, then 4429),
3. one pydantic pass over the envelope and payload (:mod:`secure_ws.messages`),
4. the message type's permissions (``forbidden``),
5. the ``handle_<type>`` coroutine.

Client frames never go through Channels' ``dispatch()`` type-to-method mapping: a client
that sends ``{"type": "websocket.disconnect"}`` gets ``unknown_type``, not an internal
method. Channel-layer events keep Channels' naming but cannot reach client handlers,
transport handlers or the consumer's own methods.

Every close of an open connection is preceded by an ``error`` frame carrying the reason,
because daphne drops close reasons (daphne#374).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Coroutine
from typing import Any, ClassVar

from channels.db import aclose_old_connections
from channels.exceptions import StopConsumer
from pydantic import BaseModel

from secure_ws import signals
from secure_ws.audit.sink import get_audit_sink
from secure_ws.codes import APP_SUBPROTOCOL, CloseCode, ErrorCode, Reason, private_close_code
from secure_ws.conf import get_settings
from secure_ws.connection import SCOPE_KEY, ConnectionInfo, get_connection_info
from secure_ws.dispatch import SplitDispatchConsumer
from secure_ws.events import install_drop_monitor
from secure_ws.exceptions import MessageRejected, Refused
from secure_ws.gate.refusal import record_refusal
from secure_ws.limits import (
    ConnectionLimits,
    MessageRateLimiter,
    SlidingWindowCounter,
)
from secure_ws.messages import (
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
from secure_ws.permissions import BasePermission, IsAuthenticated
from secure_ws.revocation import session_group, user_group

logger = logging.getLogger("secure_ws.consumer")

Message = dict[str, Any]

#: Error codes that count towards the violation window (``VIOLATION_LIMIT``).
VIOLATION_CODES = frozenset(
    {
        ErrorCode.INVALID_JSON,
        ErrorCode.INVALID_MESSAGE,
        ErrorCode.UNKNOWN_TYPE,
        ErrorCode.FORBIDDEN,
        ErrorCode.TOO_LARGE,
        ErrorCode.RATE_LIMITED,
    }
)

#: What the client reads in the ``detail`` of a close's ``error`` frame.
_CLOSE_DETAILS: dict[Reason, str] = {
    Reason.TOKEN_EXPIRED: "The access token expired.",
    Reason.REVOKED: "The connection was revoked.",
    Reason.IDLE_TIMEOUT: "The connection was idle for too long.",
    Reason.TOO_MANY_VIOLATIONS: "Too many invalid messages.",
    Reason.RATE_LIMITED: "Too many messages.",
    Reason.BINARY_NOT_ALLOWED: "Binary frames are not accepted.",
    Reason.TOO_LARGE: "The message is too large.",
    Reason.FORBIDDEN: "The token belongs to another user.",
    Reason.BACKEND_UNAVAILABLE: "Try again later.",
}


class SecureJsonWebsocketConsumer(SplitDispatchConsumer):
    """Base class for JSON WebSocket endpoints behind :func:`secure_ws.secure_websocket`.

    Subclass it, declare client message types with
    :func:`~secure_ws.messages.message_handler` on ``handle_<type>`` coroutines, and reply
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
        self.connection = ConnectionInfo()
        self.limits: ConnectionLimits | None = None
        self.handler_errors = 0
        self._accepted = False
        self._closing = False
        self._cleaned = False
        self._close_code: int | None = None
        self._joined_groups: list[str] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._expiry_task: asyncio.Task[None] | None = None
        self._rate_limiter: MessageRateLimiter | None = None
        self._violations: SlidingWindowCounter | None = None
        self._rate_limited_streak = 0
        self._last_activity = time.monotonic()

    # ------------------------------------------------------------------ configuration

    def get_limits(self) -> ConnectionLimits:
        """Return this connection's limits: class attributes over ``SECURE_WS`` settings.

        Called once when the connection opens, so settings are read lazily and a changed
        setting reaches the next connection.
        """
        settings = get_settings()

        def pick(attribute: str, setting: Any) -> Any:
            value = getattr(self, attribute)
            return setting if value is None else value

        return ConnectionLimits(
            max_message_bytes=pick("max_message_bytes", settings.MAX_MESSAGE_BYTES),
            max_json_depth=pick("max_json_depth", settings.MAX_JSON_DEPTH),
            allow_binary=pick("allow_binary", settings.ALLOW_BINARY),
            message_rate=pick("message_rate", settings.MESSAGE_RATE),
            message_burst=pick("message_burst", settings.MESSAGE_BURST),
            byte_rate=pick("byte_rate", settings.BYTE_RATE),
            rate_limit_close_after=pick("rate_limit_close_after", settings.RATE_LIMIT_CLOSE_AFTER),
            violation_limit=pick("violation_limit", settings.VIOLATION_LIMIT),
            violation_window=pick("violation_window", settings.VIOLATION_WINDOW),
            idle_timeout=pick("idle_timeout", settings.IDLE_TIMEOUT),
            token_expiry_warning=pick("token_expiry_warning", settings.TOKEN_EXPIRY_WARNING),
            oversize_close_factor=self.oversize_close_factor,
        )

    def get_groups(self) -> list[str]:
        """Return the channel-layer groups this connection joins before it is accepted.

        The per-user group (and the login session's group when the token carried a
        ``sid``) is how revocation reaches the connection on any process; override to add
        groups, keeping the base ones.
        """
        info = self.connection
        groups = list(self.groups or [])
        if info.user_id is not None:
            groups.append(user_group(info.user_id))
        if info.session_id:
            groups.append(session_group(info.session_id))
        return groups

    # ------------------------------------------------------------------ hooks

    async def check_connection(self) -> None:
        """Refuse this connection by raising :class:`~secure_ws.exceptions.Refused`.

        Runs after the base checks, before the connection is accepted.
        """

    async def on_open(self) -> None:
        """Run once the connection is accepted."""

    async def on_close(self, code: int) -> None:
        """Run when the connection ends, however it ends (before the audit record)."""

    async def receive_bytes(self, data: bytes) -> None:
        """Handle a binary frame of a consumer with ``allow_binary = True``.

        Raises:
            MessageRejected: to answer the frame with an ``error``.
        """
        raise MessageRejected(ErrorCode.INVALID_MESSAGE, "Binary frames are not handled")

    # ------------------------------------------------------------------ dispatch plumbing

    async def finish(self) -> None:
        """Clean up when the consumer stops, even without ``websocket.disconnect``."""
        await self._cleanup(self._close_code or CloseCode.GOING_AWAY)

    def event_dropped(self, kind: object) -> None:
        """Log a channel-layer event that names no allowed handler (it is dropped)."""
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

    # ------------------------------------------------------------------ handshake

    async def websocket_connect(self, message: Message) -> None:
        """Check the gate's work, join the revocation groups, accept with ``secure-ws.v1``."""
        try:
            await self._admit()
        except Refused as refusal:
            await self._refuse(refusal)
            return
        await self.accept(APP_SUBPROTOCOL)
        self._accepted = True
        install_drop_monitor()
        info = self.connection
        self._audit("connection_opened", info)
        signals.connection_accepted.send_robust(sender=None, info=info)
        limits = self.limits
        assert limits is not None
        if info.token_exp is not None:
            self._expiry_task = self._spawn(self._watch_expiry())
        if limits.idle_timeout is not None:
            self._spawn(self._watch_idle(limits.idle_timeout))
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
        info.channel_name = getattr(self, "channel_name", "")
        user = scope.get("user")
        if user is not None and user.is_authenticated:
            if info.user_id is None or str(user.pk) != str(info.user_id):
                raise Refused(Reason.NOT_AUTHENTICATED, "scope user does not match the gate's")
        elif get_settings().REQUIRE_AUTHENTICATION or info.user_id is not None:
            raise Refused(Reason.NOT_AUTHENTICATED, "the gate did not authenticate the scope")
        if APP_SUBPROTOCOL not in scope.get("subprotocols", ()):
            raise Refused(Reason.SUBPROTOCOL_REQUIRED, "client did not offer secure-ws.v1")
        if self.channel_layer is None:
            raise Refused(Reason.BACKEND_UNAVAILABLE, "no channel layer: revocation impossible")
        self.limits = self.get_limits()
        self._rate_limiter = MessageRateLimiter(self.limits)
        self._violations = SlidingWindowCounter(
            self.limits.violation_limit, self.limits.violation_window
        )
        await self.check_connection()
        for group in self.get_groups():
            try:
                await self.channel_layer.group_add(group, self.channel_name)
            except Exception as exc:
                raise Refused(Reason.BACKEND_UNAVAILABLE, "channel layer group_add failed") from exc
            self._joined_groups.append(group)

    async def _refuse(self, refusal: Refused) -> None:
        record_refusal(self.scope, refusal)
        self._closing = True
        if get_settings().REFUSAL_MODE == "close":
            subprotocols = self.scope.get("subprotocols", ())
            await self.accept(APP_SUBPROTOCOL if APP_SUBPROTOCOL in subprotocols else None)
            frame = {"type": "error", "payload": {"code": refusal.reason.value}}
            await self.base_send({"type": "websocket.send", "text": json.dumps(frame)})
            await self.close_transport(int(refusal.close_code), refusal.reason.value)
        else:
            await self.close()

    # ------------------------------------------------------------------ frames

    async def websocket_receive(self, message: Message) -> None:
        """Check, validate and dispatch one client frame (the per-message hot path)."""
        if self._closing or not self._accepted:
            return
        text = message.get("text")
        if text is None:
            await self._receive_binary(message.get("bytes") or b"")
            return
        info = self.connection
        nbytes = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
        info.messages_in += 1
        info.bytes_in += nbytes
        self._last_activity = time.monotonic()
        if not await self._admit_frame(nbytes, text):
            return
        try:
            decoded = self.message_registry.decode(text, max_depth=self.limits.max_json_depth)  # type: ignore[union-attr]
        except FrameRejected as exc:
            await self.reject(exc, exc.client_id)
            return
        except Exception:
            # A decoder bug must not end the connection (or the server) either.
            self._count_handler_error("decode")
            await self.send_error(ErrorCode.SERVER_ERROR, "Internal error")
            return
        await self._dispatch_message(decoded)

    async def _admit_frame(self, nbytes: int, text: str | None) -> bool:
        limits = self.limits
        assert limits is not None
        assert self._rate_limiter is not None
        if nbytes > limits.max_message_bytes:
            if nbytes > limits.max_message_bytes * limits.oversize_close_factor:
                await self.close_with(CloseCode.MESSAGE_TOO_BIG, Reason.TOO_LARGE)
            else:
                await self.reject(MessageRejected(ErrorCode.TOO_LARGE, "Message too large"))
            return False
        if self._rate_limiter.allow(nbytes):
            self._rate_limited_streak = 0
            return True
        self._rate_limited_streak += 1
        if self._rate_limited_streak >= limits.rate_limit_close_after:
            await self.close_with(CloseCode.RATE_LIMITED, Reason.RATE_LIMITED)
            return False
        client_id = extract_client_id(text) if text is not None else None
        rejection = MessageRejected(ErrorCode.RATE_LIMITED, "Too many messages")
        # One violation per episode: a flood is answered by 4429, repeated bursts by 1008.
        await self.reject(rejection, client_id, violation=self._rate_limited_streak == 1)
        return False

    async def _receive_binary(self, data: bytes) -> None:
        info = self.connection
        info.messages_in += 1
        info.bytes_in += len(data)
        self._last_activity = time.monotonic()
        if not self.limits or not self.limits.allow_binary:
            await self.close_with(CloseCode.UNSUPPORTED_DATA, Reason.BINARY_NOT_ALLOWED)
            return
        if not await self._admit_frame(len(data), None):
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
        info = self.connection
        info.messages_out += 1
        info.bytes_out += len(text)

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

    async def reject(
        self, exc: MessageRejected, client_id: str | None = None, *, violation: bool = True
    ) -> None:
        """Answer a refused message with ``error``, audit it and count the violation."""
        await self.send_error(exc.code, exc.detail, exc.errors, client_id)
        if exc.code in VIOLATION_CODES:
            self.security_event(exc.code.value, exc.detail)
            if violation:
                await self._violation()

    async def _violation(self) -> None:
        self.connection.violations += 1
        assert self._violations is not None
        if self._violations.add():
            await self.close_with(CloseCode.POLICY_VIOLATION, Reason.TOO_MANY_VIOLATIONS)

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
        self._cancel_timers()
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

    # ------------------------------------------------------------------ lifecycle

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _cancel_timers(self) -> None:
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()

    async def _watch_expiry(self) -> None:
        try:
            exp = self.connection.token_exp
            if exp is None or self.limits is None:
                return
            warning = self.limits.token_expiry_warning
            if warning > 0 and exp - time.time() > warning:
                await asyncio.sleep(exp - time.time() - warning)
            remaining = exp - time.time()
            if warning > 0 and remaining > 0:
                await self.send_message(
                    "auth.expiring", AuthExpiringPayload(expires_in=round(remaining, 3))
                )
            await asyncio.sleep(max(0.0, exp - time.time()))
            await self.close_with(CloseCode.UNAUTHORIZED, Reason.TOKEN_EXPIRED)
        except asyncio.CancelledError:
            raise
        except Exception:
            self._count_handler_error("token expiry timer")

    async def _watch_idle(self, idle_seconds: float) -> None:
        try:
            while not self._closing:
                remaining = self._last_activity + idle_seconds - time.monotonic()
                if remaining <= 0:
                    await self.close_with(CloseCode.IDLE_TIMEOUT, Reason.IDLE_TIMEOUT)
                    return
                await asyncio.sleep(remaining)
        except asyncio.CancelledError:
            raise
        except Exception:
            self._count_handler_error("idle timer")

    async def secure_ws_revoke(self, event: Message) -> None:
        """Channel-layer event ``secure_ws.revoke``: close with 4403 ``revoked``."""
        await self.close_with(CloseCode.FORBIDDEN, Reason.REVOKED)

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
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
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
        if self._expiry_task is not None:
            self._expiry_task.cancel()
        self._expiry_task = self._spawn(self._watch_expiry())
        expires_in = round(max(0.0, validated.exp - time.time()), 3)
        await self.send_message("ack", {"expires_in": expires_in}, id=message.id)

    async def _move_session(self, session_id: str | None) -> None:
        info = self.connection
        if session_id == info.session_id or not session_id:
            return
        await self.join_group(session_group(session_id))
        if info.session_id:
            await self.leave_group(session_group(info.session_id))
        info.session_id = session_id


SecureJsonWebsocketConsumer._collect_messages()
SecureJsonWebsocketConsumer.reserved_event_handlers = frozenset(
    name
    for klass in SecureJsonWebsocketConsumer.__mro__
    for name in vars(klass)
    if name != "secure_ws_revoke"
)
