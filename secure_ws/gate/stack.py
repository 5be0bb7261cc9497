"""``secure_websocket(inner)``: the whole gate, in the order a connection meets it.

::

    HandshakeGuardMiddleware        unknown paths and unexpected errors: refusal, not a 500
     └ ClientAddressMiddleware      1. real client IP and scheme (trusted proxies only)
        └ HandshakeThrottleMiddleware   2. per-IP handshake token bucket, on every attempt
           └ TransportMiddleware        3. TLS, Host, version, root path, header hygiene
              └ OriginMiddleware            4. Origin allow-list (CSWSH)
                 └ CredentialsMiddleware     5. JWT / ticket / (opt-in) session
                    └ ConnectionCapMiddleware 6. per-user and per-IP slots, held while open
                       └ inner (usually URLRouter)

The throttle comes before every check a client can fail, so a flood of handshakes that
would be refused anyway (bad Origin, bad Host, bad token) empties its bucket too and is
then refused without any origin, Host or credential work.

:class:`UnknownRouteMiddleware` is the unknown-path part alone, for stacks built by hand.
"""

from __future__ import annotations

import logging
from typing import Any

from django.urls import Resolver404

from secure_ws.codes import Reason
from secure_ws.connection import get_connection_info
from secure_ws.exceptions import Refused
from secure_ws.gate.base import ASGIApp, Scope, settled
from secure_ws.gate.caps import ConnectionCapMiddleware
from secure_ws.gate.client import ClientAddressMiddleware
from secure_ws.gate.credentials import CredentialsMiddleware
from secure_ws.gate.origin import OriginMiddleware
from secure_ws.gate.refusal import refuse
from secure_ws.gate.throttle import HandshakeThrottleMiddleware
from secure_ws.gate.transport import TransportMiddleware

logger = logging.getLogger("secure_ws.gate")


class _Progress:
    """Watches an application's ASGI traffic: did it take ``connect``, did it accept?"""

    __slots__ = ("_receive", "_send", "answered", "connect_received")

    def __init__(self, receive: Any, send: Any) -> None:
        self.connect_received = False
        self.answered = False
        self._receive = receive
        self._send = send

    async def receive(self) -> Any:
        message = await self._receive()
        if message.get("type") == "websocket.connect":
            self.connect_received = True
        return message

    async def send(self, message: Any) -> None:
        if message.get("type") in ("websocket.accept", "websocket.close"):
            self.answered = True
        await self._send(message)


class UnknownRouteMiddleware:
    """Refuse a WebSocket path no route matches, with a log line instead of a traceback.

    Channels' ``URLRouter`` raises ``ValueError`` for an unknown path, which daphne turns
    into a 500 and an error-level traceback (channels#2147): log noise an attacker controls.
    An error raised after the connection was answered is never swallowed.
    """

    def __init__(self, application: ASGIApp) -> None:
        self.application = application

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope.get("type") != "websocket":
            await self.application(scope, receive, send)
            return
        progress = _Progress(receive, send)
        try:
            await self.application(scope, progress.receive, progress.send)
        except Exception as exc:
            refusal = None if progress.answered else self.refusal_for(exc, scope)
            if refusal is None:
                raise
            refusal = await settled(scope, refusal)
            # Plain 403 in every REFUSAL_MODE: random-path floods and a broken application
            # get no accepted socket (secure_ws.gate.refusal).
            await refuse(
                scope,
                receive,
                send,
                refusal,
                connect_received=progress.connect_received,
                plain=True,
            )

    def refusal_for(self, exc: Exception, scope: Scope) -> Refused | None:
        """Return the refusal for ``exc`` raised before the handshake was answered.

        Called inside the ``except`` block. Return ``None`` to let ``exc`` propagate.
        """
        if isinstance(exc, (ValueError, Resolver404)) and str(exc).startswith("No route found"):
            return Refused(Reason.UNKNOWN_ROUTE, "no route for path")
        return None


class HandshakeGuardMiddleware(UnknownRouteMiddleware):
    """Refuse cleanly whatever goes wrong before ``websocket.accept``: never a 500.

    An unknown path becomes an ``unknown_route`` refusal with one log line (see
    :class:`UnknownRouteMiddleware`); a :class:`~secure_ws.exceptions.Refused` raised by a
    step or an application is refused as such; any other unexpected error before the
    connection was answered becomes a ``server_error`` refusal (logged with its
    traceback: that one is a bug, not hostile input). One wrapper, outermost, so messages
    of an open connection pass through a single extra layer.
    """

    def refusal_for(self, exc: Exception, scope: Scope) -> Refused | None:
        """Return ``exc`` itself, the unknown-route refusal, or a ``server_error`` one."""
        if isinstance(exc, Refused):
            return exc
        unknown_route = super().refusal_for(exc, scope)
        if unknown_route is not None:
            return unknown_route
        logger.exception(
            "unexpected error before accept, connection_id=%s",
            get_connection_info(scope).connection_id,
        )
        return Refused(Reason.SERVER_ERROR, "unexpected error before accept")


def secure_websocket(
    inner: ASGIApp, credentials_class: type[CredentialsMiddleware] = CredentialsMiddleware
) -> ASGIApp:
    """Wrap a WebSocket application (usually a ``URLRouter``) in the whole gate.

    Every step reads ``SECURE_WS`` at connection time, so ``override_settings`` reaches
    them. ``credentials_class`` is a :class:`CredentialsMiddleware` subclass overriding its
    hooks (where the credential is found, how it is validated, how the user is fetched).
    With Redis the throttle's token, the user state, revocation, a ticket and the caps are
    one round trip (:mod:`secure_ws.gate.admission`). Use the step classes directly to
    build a different stack.
    """
    return HandshakeGuardMiddleware(
        ClientAddressMiddleware(
            HandshakeThrottleMiddleware(
                TransportMiddleware(
                    OriginMiddleware(credentials_class(ConnectionCapMiddleware(inner)))
                ),
                defer=True,
            )
        )
    )
