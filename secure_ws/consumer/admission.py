"""What a connection must pass to open, and to stay open after ``auth.refresh``.

The gate authenticated the handshake; the consumer checks the gate's work before it
accepts (:func:`admit`): the scope carries the gate's
:class:`~secure_ws.connection.ConnectionInfo`, its user matches, the client offered
``secure-ws.v1``, the user's own ``check_connection`` agrees, the groups are joined and
the connection is registered for revocation — last, so that nothing after it can refuse.
A refusal gets the same answer as a gate refusal. :func:`connect` then accepts, writes the
``connection_opened`` record and starts the expiry and idle timers.

``auth.refresh`` (:func:`refresh`) moves the expiry with a new access token of the same
user; a token of another user closes the connection.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from secure_ws import signals
from secure_ws.codes import APP_SUBPROTOCOL, CloseCode, ErrorCode, Reason
from secure_ws.conf import get_settings
from secure_ws.connection import SCOPE_KEY, ConnectionInfo, get_connection_info
from secure_ws.consumer.messages import AuthRefreshPayload, ClientMessage
from secure_ws.consumer.traffic import ConnectionTraffic
from secure_ws.exceptions import BackendUnavailable, MessageRejected, Refused
from secure_ws.gate.refusal import refuse
from secure_ws.sessions.pubsub import ensure_subscribed

if TYPE_CHECKING:
    from secure_ws.consumer.secure import SecureJsonWebsocketConsumer


async def connect(consumer: SecureJsonWebsocketConsumer) -> None:
    """Admit and accept ``consumer``'s connection, or refuse it like the gate would."""
    state = consumer.state
    try:
        await admit(consumer)
    except Refused as refusal:
        # The same answer as a gate refusal (HTTP 403, or accept + error + close).
        state.closing = True
        await refuse(consumer.scope, None, consumer.base_send, refusal, connect_received=True)
        return
    await consumer.accept(APP_SUBPROTOCOL)
    state.accepted = True
    consumer.attach_output()
    info = state.info
    state.opened()
    await signals.send(signals.connection_accepted, info=info)
    if state.pending_end is not None:
        # Revoked (or the subscription lost) between registration and accept.
        await consumer.close_with(*state.pending_end)
        return
    traffic = state.traffic
    assert traffic is not None
    warning = traffic.limits.token_expiry_warning
    if info.token_exp is not None:
        state.timers.watch_expiry(info.token_exp, warning, info.expiry_reason)
    else:
        # No credential expiry (anonymous, or a credential without one): a bounded age.
        max_age = get_settings().MAX_CONNECTION_AGE
        state.timers.watch_expiry(info.opened_at + max_age, warning, Reason.CONNECTION_TOO_OLD)
    if traffic.limits.idle_timeout is not None:
        state.timers.watch_idle(traffic.limits.idle_timeout, lambda: traffic.last_activity)
    try:
        await consumer.on_open()
    except Exception:
        state.handler_error("on_open")


async def admit(consumer: SecureJsonWebsocketConsumer) -> None:
    """Run the consumer-side checks of a new connection.

    Raises:
        Refused: the connection must not open.
    """
    scope, state = consumer.scope, consumer.state
    info = scope.get(SCOPE_KEY)
    if not isinstance(info, ConnectionInfo):
        state.info = get_connection_info(scope)
        raise Refused(Reason.NOT_AUTHENTICATED, "consumer is not behind secure_websocket()")
    state.info = info
    user = scope.get("user")
    if user is not None and user.is_authenticated:
        if info.user_id is None or str(user.pk) != str(info.user_id):
            raise Refused(Reason.NOT_AUTHENTICATED, "scope user does not match the gate's")
    elif get_settings().REQUIRE_AUTHENTICATION or info.user_id is not None:
        raise Refused(Reason.NOT_AUTHENTICATED, "the gate did not authenticate the scope")
    if APP_SUBPROTOCOL not in scope.get("subprotocols", ()):
        raise Refused(Reason.SUBPROTOCOL_REQUIRED, "client did not offer secure-ws.v1")
    layer = consumer.channel_layer
    if layer is None:
        raise Refused(Reason.BACKEND_UNAVAILABLE, "no channel layer")
    state.limits = limits = consumer.get_limits()
    state.traffic = ConnectionTraffic(info, limits)
    await consumer.check_connection()
    for group in consumer.get_groups():
        try:
            await layer.group_add(group, await consumer.open_channel())
        except Exception as exc:
            raise Refused(Reason.BACKEND_UNAVAILABLE, "channel layer group_add failed") from exc
        state.groups.append(group)
    # Last, so that nothing after it can refuse: from here a revocation reaches it.
    try:
        registry = await ensure_subscribed()
    except BackendUnavailable as exc:
        raise Refused(Reason.BACKEND_UNAVAILABLE, "revocation subscription down") from exc
    registry.add(consumer)
    state.registry = registry


async def refresh(
    consumer: SecureJsonWebsocketConsumer, message: ClientMessage[AuthRefreshPayload]
) -> None:
    """Move the connection's expiry with a new access token of the same user.

    Raises:
        MessageRejected: the token is not accepted (or cannot be checked now).
    """
    # Deferred: the gate's credentials module imports django.contrib.auth models, which
    # need the app registry, and consumer modules are imported by settings-time routing.
    from secure_ws.gate.credentials import validate_access_token

    try:
        validated = await validate_access_token(message.payload.token.get_secret_value())
    except Refused as exc:
        if exc.reason == Reason.BACKEND_UNAVAILABLE:
            raise MessageRejected(ErrorCode.SERVER_ERROR, "Try again later") from None
        raise MessageRejected(ErrorCode.INVALID_MESSAGE, "Token not accepted") from None
    state = consumer.state
    info = state.info
    if info.user_id is None or str(validated.user.pk) != str(info.user_id):
        await consumer.close_with(CloseCode.FORBIDDEN, Reason.FORBIDDEN, client_id=message.id)
        return
    session_id = validated.session_id
    if session_id and session_id != info.session_id:
        info.session_id = session_id
        if state.registry is not None:
            state.registry.move_session(consumer, session_id)
    info.token_exp = validated.exp
    info.token_jti = validated.jti
    info.expiry_reason = Reason.TOKEN_EXPIRED
    limits = state.limits
    assert limits is not None
    state.timers.watch_expiry(validated.exp, limits.token_expiry_warning, Reason.TOKEN_EXPIRED)
    expires_in = round(max(0.0, validated.exp - time.time()), 3)
    await consumer.send_message("ack", {"expires_in": expires_in}, id=message.id)
