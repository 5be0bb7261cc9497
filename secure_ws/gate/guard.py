"""Gate step 0: whatever goes wrong before the handshake is answered is a refusal, not a 500.

The guard watches the application's ASGI traffic (:class:`Progress`): did it take the
``websocket.connect`` message, did it answer? An exception raised before the answer becomes
a plain 403 refusal with one log line; one raised after it propagates untouched.
:func:`~secure_ws.gate.stack.secure_websocket` runs the guard around its own steps and the
inner application from a single frame; :class:`UnknownRouteMiddleware` and
:class:`HandshakeGuardMiddleware` are the same guard as middlewares, for stacks built by hand.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import markcoroutinefunction
from django.urls import Resolver404

from secure_ws.codes import Reason
from secure_ws.connection import get_connection_info
from secure_ws.exceptions import Refused
from secure_ws.gate.base import ASGIApp, Scope, settled
from secure_ws.gate.refusal import refuse

logger = logging.getLogger("secure_ws.gate")

_ANSWERS = frozenset({"websocket.accept", "websocket.close"})


def _progress_receive(self: Progress) -> Awaitable[Any]:
    if self.connect_received:
        return self._receive()  # the server's own awaitable: no frame of ours per message
    return self._first_receive()


def _progress_send(self: Progress, message: Any) -> Awaitable[None]:
    if not self.answered and message.get("type") in _ANSWERS:
        self.answered = True
    return self._send(message)


class Progress:
    """Watches an application's ASGI traffic: did it take ``connect``, did it answer?

    ``receive`` and ``send`` are plain functions returning the server's awaitables (marked
    as coroutine functions for ``async_to_sync``): an idle connection keeps no frame of the
    guard suspended in its ``receive``, and a message costs one function call.
    """

    __slots__ = ("_receive", "_send", "answered", "connect_received")

    def __init__(self, receive: Any, send: Any) -> None:
        self.connect_received = False
        self.answered = False
        self._receive: Callable[[], Awaitable[Any]] = receive
        self._send: Callable[[Any], Awaitable[None]] = send

    receive = markcoroutinefunction(_progress_receive)
    send = markcoroutinefunction(_progress_send)

    async def _first_receive(self) -> Any:
        message = await self._receive()
        if message.get("type") == "websocket.connect":
            self.connect_received = True
        return message


def unknown_route(exc: Exception) -> Refused | None:
    """Return the ``unknown_route`` refusal if ``exc`` is Channels' "No route found"."""
    if isinstance(exc, (ValueError, Resolver404)) and str(exc).startswith("No route found"):
        return Refused(Reason.UNKNOWN_ROUTE, "no route for path")
    return None


def guard_refusal(exc: Exception, scope: Scope) -> Refused:
    """Return the refusal for ``exc`` raised before the handshake was answered.

    ``exc`` itself if it is a :class:`~secure_ws.exceptions.Refused`, the unknown-route
    refusal, or else ``server_error`` (logged with its traceback: a bug, not hostile input).
    Called inside the ``except`` block.
    """
    if isinstance(exc, Refused):
        return exc
    found = unknown_route(exc)
    if found is not None:
        return found
    logger.exception(
        "unexpected error before accept, connection_id=%s",
        get_connection_info(scope).connection_id,
    )
    return Refused(Reason.SERVER_ERROR, "unexpected error before accept")


async def refuse_plainly(
    scope: Scope, receive: Any, send: Any, refusal: Refused, progress: Progress
) -> None:
    """Answer a guard refusal: a plain 403 in every ``REFUSAL_MODE``.

    Random-path floods and a broken application get no accepted socket
    (:mod:`secure_ws.gate.refusal`).
    """
    await refuse(
        scope,
        receive,
        send,
        await settled(scope, refusal),
        connect_received=progress.connect_received,
        plain=True,
    )


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
        progress = Progress(receive, send)
        try:
            await self.application(scope, progress.receive, progress.send)
        except Exception as exc:
            refusal = None if progress.answered else self.refusal_for(exc, scope)
            if refusal is None:
                raise
            await refuse_plainly(scope, receive, send, refusal, progress)

    def refusal_for(self, exc: Exception, scope: Scope) -> Refused | None:
        """Return the refusal for ``exc`` raised before the handshake was answered.

        Called inside the ``except`` block. Return ``None`` to let ``exc`` propagate.
        """
        return unknown_route(exc)


class HandshakeGuardMiddleware(UnknownRouteMiddleware):
    """Refuse cleanly whatever goes wrong before ``websocket.accept``: never a 500.

    A :class:`~secure_ws.exceptions.Refused` raised by a step or an application is refused
    as such, an unknown path as ``unknown_route``, anything else as ``server_error``
    (:func:`guard_refusal`).
    """

    def refusal_for(self, exc: Exception, scope: Scope) -> Refused | None:
        """Return ``exc`` itself, the unknown-route refusal, or a ``server_error`` one."""
        return guard_refusal(exc, scope)
