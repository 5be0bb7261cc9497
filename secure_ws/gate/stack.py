"""``secure_websocket(inner)``: the whole gate, in the order a connection meets it.

::

    guard            unknown paths and unexpected errors: refusal, not a 500
    1. client        real client IP and scheme (trusted proxies only)
    2. throttle      per-IP handshake token bucket, on every attempt
    3. transport     TLS, Host, version, root path, header hygiene
    4. origin        Origin allow-list (CSWSH)
    5. credentials   JWT / ticket / (opt-in) session
    6. caps          per-user and per-IP slots, held while open
    inner            (usually URLRouter)

The throttle comes before every check a client can fail, so a flood of handshakes that
would be refused anyway (bad Origin, bad Host, bad token) empties its bucket too and is
then refused without any origin, Host or credential work.

:class:`Gate` runs those steps from one frame: each step's ``check(scope, info)`` in turn,
then the inner application with the server's own ``receive``/``send`` behind the guard's
frame-free watcher. An open connection keeps that one frame and nothing else of the gate.
The step classes are also ASGI middlewares, for stacks built by hand.
"""

from __future__ import annotations

from typing import Any

from secure_ws.connection import ConnectionInfo, get_connection_info
from secure_ws.exceptions import Refused
from secure_ws.gate.admission import ADMISSION_SCOPE_KEY
from secure_ws.gate.base import ASGIApp, GateStep, Scope, settled
from secure_ws.gate.caps import ConnectionCapMiddleware
from secure_ws.gate.client import ClientAddressMiddleware
from secure_ws.gate.credentials import CredentialsMiddleware
from secure_ws.gate.guard import (
    HandshakeGuardMiddleware,
    Progress,
    UnknownRouteMiddleware,
    guard_refusal,
    refuse_plainly,
)
from secure_ws.gate.origin import OriginMiddleware
from secure_ws.gate.refusal import refuse
from secure_ws.gate.slots import ConnectionSlot
from secure_ws.gate.throttle import HandshakeThrottleMiddleware
from secure_ws.gate.transport import TransportMiddleware

__all__ = ["Gate", "HandshakeGuardMiddleware", "UnknownRouteMiddleware", "secure_websocket"]


class Gate:
    """The gate as one ASGI callable: guard, steps in order, caps, then ``inner``.

    Built from a composed chain ``HandshakeGuardMiddleware(step(step(...(caps(inner)))))``:
    the chain says the order (and lets the credentials step see the cap step it takes
    slots for); the gate runs it flat. ``application`` is that chain, for tools that walk
    middleware (the route check); calling the gate never calls it.
    """

    __slots__ = ("application", "caps", "inner", "steps")

    def __init__(self, chain: HandshakeGuardMiddleware) -> None:
        self.application = chain
        steps: list[GateStep] = []
        app = chain.application
        while isinstance(app, GateStep):
            steps.append(app)
            app = app.application
        if not isinstance(app, ConnectionCapMiddleware):
            raise TypeError("the gate chain must end with ConnectionCapMiddleware(inner)")
        self.steps = tuple(steps)
        self.caps = app
        self.inner: ASGIApp = app.application

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope.get("type") != "websocket":
            await self.inner(scope, receive, send)
            return
        info = get_connection_info(scope)
        progress = Progress(receive, send)
        try:
            slot = await self._admit(scope, info)
        except Refused as refusal:
            await refuse(scope, receive, send, await settled(scope, refusal))
            return
        except Exception as exc:
            await refuse_plainly(scope, receive, send, guard_refusal(exc, scope), progress)
            return
        finally:
            # The handshake's admission state (a deferred token, the slot) is spent by now.
            scope.pop(ADMISSION_SCOPE_KEY, None)
        try:
            try:
                slot.start_heartbeat()
                info.release_slot = slot.release
                await self.inner(scope, progress.receive, progress.send)
            finally:
                await slot.release()
        except Exception as exc:
            if progress.answered:
                raise
            await refuse_plainly(scope, receive, send, guard_refusal(exc, scope), progress)

    async def _admit(self, scope: Scope, info: ConnectionInfo) -> ConnectionSlot:
        """Run every step's check, then take (or collect) the connection's slot."""
        for step in self.steps:
            await step.check(scope, info)
        return await self.caps.admit(scope, info)


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
    return Gate(
        HandshakeGuardMiddleware(
            ClientAddressMiddleware(
                HandshakeThrottleMiddleware(
                    TransportMiddleware(
                        OriginMiddleware(credentials_class(ConnectionCapMiddleware(inner)))
                    ),
                    defer=True,
                )
            )
        )
    )
