"""Signals for side effects the project owns; a signal never decides a connection.

Every signal is sent with ``sender=None`` and an ``info`` keyword holding the
:class:`~secure_ws.connection.ConnectionInfo`, always through :func:`send` (or
:func:`send_soon` from synchronous code on the event loop). Both use Django's
``asend_robust``: a synchronous receiver runs in a worker thread (so it may use the ORM),
an ``async def`` receiver is awaited on the event loop, and a receiver that raises is
logged once, with the connection id, and otherwise ignored. The connection is refused,
accepted or closed exactly as it would be with no receiver at all. See ``docs/signals.md``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from django.dispatch import Signal

from secure_ws.compat import SignalWithoutFailureLog

logger = logging.getLogger("secure_ws.signals")


class ConnectionSignal(SignalWithoutFailureLog):
    """A signal whose receivers' failures are logged by :func:`send`, with the connection id."""


#: Sent for every refused connection attempt, with ``info`` and ``reason``, before the answer.
connection_refused = ConnectionSignal()
#: Sent when a connection is accepted, with ``info``.
connection_accepted = ConnectionSignal()
#: Sent when an accepted connection closes, with ``info`` and ``close_code``.
connection_closed = ConnectionSignal()
#: Sent for every security event inside a connection, with ``info``, ``kind`` and ``detail``.
security_event = ConnectionSignal()

_NAMES = {
    id(connection_refused): "connection_refused",
    id(connection_accepted): "connection_accepted",
    id(connection_closed): "connection_closed",
    id(security_event): "security_event",
}

# Tasks started by send_soon: the loop holds only weak references to tasks.
_pending: set[asyncio.Task[None]] = set()


async def send(signal: Signal, **kwargs: Any) -> None:
    """Send ``signal`` to every receiver; never raise because of a receiver.

    Returns at once when nobody listens (the common case costs one lookup).
    """
    if not signal.has_listeners(None):
        return
    responses = await signal.asend_robust(sender=None, **kwargs)
    for receiver, result in responses:
        if isinstance(result, Exception):
            _log_failure(signal, receiver, result, kwargs.get("info"))


def send_soon(signal: Signal, **kwargs: Any) -> None:
    """Schedule :func:`send` from synchronous code running on the event loop.

    Outside an event loop (a management command, a sync test) it sends at once with
    ``send_robust``, which runs ``async def`` receivers through ``async_to_sync``.
    """
    if not signal.has_listeners(None):
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        for receiver, result in signal.send_robust(sender=None, **kwargs):
            if isinstance(result, Exception):
                _log_failure(signal, receiver, result, kwargs.get("info"))
        return
    task = loop.create_task(send(signal, **kwargs))
    _pending.add(task)
    task.add_done_callback(_pending.discard)


def _log_failure(signal: Signal, receiver: Any, error: Exception, info: Any) -> None:
    logger.error(
        "%s receiver %s failed (%s); the connection is unaffected: connection_id=%s",
        _NAMES.get(id(signal), "signal"),
        getattr(receiver, "__qualname__", repr(receiver)),
        type(error).__name__,
        getattr(info, "connection_id", ""),
        exc_info=error,
    )
