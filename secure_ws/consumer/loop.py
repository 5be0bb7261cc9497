"""The consumer's receive loop: client messages and channel-layer events kept apart.

Why this re-implements Channels' ``AsyncConsumer.__call__``: Channels reads the client's
ASGI messages and channel-layer events into one ``dispatch()`` that maps any ``type`` to
the method of that name, so a channel-layer event typed ``websocket.disconnect`` or
``close`` would run that method (``tests/test_compat.py`` pins that upstream behaviour;
if it changes, this loop may become unnecessary). :func:`serve` reads the two sources
separately instead:

- client (transport) messages only ever reach ``websocket_connect``, ``websocket_receive``
  and ``websocket_disconnect``;
- channel-layer events reach only methods marked :func:`event_handler` (an allow-list, with
  Channels' naming: ``"chat.line"`` runs ``chat_line``); any other type is dropped and
  reported instead of killing the connection (Channels raises ``ValueError``);
- the channel-layer channel is created lazily, at the first :func:`open_channel` (the
  first group joined): a connection that never joins a group costs no ``new_channel()``,
  no receive task and no receive buffer; revocation reaches it through the per-process
  registry (:mod:`secure_ws.sessions`);
- a failing channel-layer receive closes the connection 1013 ``backend_unavailable``
  (fail closed: its groups and ``kick_channel`` cannot reach it any more);
- events delivered in-process (:func:`deliver`, how the connection registry hands over
  per-user events) go through the same event dispatch, in the same loop, so they never
  run beside a client message;
- the consumer's ``finish()`` runs however the loop ends, including cancellation.

It also skips the thread hop Channels' ``dispatch()`` makes before every handler
(``aclose_old_connections``): it runs once per connection end instead, at most once a
second per process. The loop's own state (wake-up, inbox, channel receive)
lives on the connection's :class:`~secure_ws.consumer.state.ConnectionState`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from channels.db import aclose_old_connections
from channels.exceptions import StopConsumer
from channels.layers import get_channel_layer

from secure_ws.codes import CloseCode, Reason
from secure_ws.consumer.fanout import install_drop_monitor
from secure_ws.consumer.state import ConnectionState

logger = logging.getLogger("secure_ws.consumer")

Message = dict[str, Any]
Handler = TypeVar("Handler", bound=Callable[..., Awaitable[None]])

#: Longest channel-layer event type that is looked up at all.
MAX_EVENT_TYPE_CHARS = 100

#: Method-name prefixes that can never be event handlers (client and transport handlers).
_NEVER_EVENTS = ("_", "handle_", "websocket_")

#: Seconds a consumer waits for its cancelled sources before leaving them to finish alone.
#: A channels-redis receive cancelled in the middle of a Redis command can take a second
#: or more to unwind; nothing the consumer does depends on it.
REAP_WAIT = 0.1

#: Seconds between two ``aclose_old_connections()`` of one process (see below).
DB_CLEANUP_INTERVAL = 1.0
_db_cleanup_due = 0.0

# Cancelled sources still unwinding: the loop holds only weak references to tasks.
_unwinding: set[asyncio.Future[Any]] = set()


class LoopConsumer(Protocol):
    """What the loop needs of a consumer (``SecureJsonWebsocketConsumer`` provides it)."""

    state: ConnectionState
    scope: Message
    base_send: Any
    channel_layer: Any
    channel_layer_alias: str
    channel_name: str
    event_handlers: frozenset[str]

    async def websocket_connect(self, message: Message) -> None: ...
    async def websocket_receive(self, message: Message) -> None: ...
    async def websocket_disconnect(self, message: Message) -> None: ...
    async def close_with(self, code: CloseCode, reason: Reason) -> None: ...
    async def finish(self) -> None: ...


def event_handler(method: Handler) -> Handler:
    """Allow channel-layer events of ``method``'s type to run it (``chat_line``: ``chat.line``).

    Only marked methods can be reached by an event; a subclass that overrides one keeps it
    allowed. ``handle_*`` and ``websocket_*`` methods cannot be marked.

    Raises:
        TypeError: ``method`` is a client or transport handler, or a private method.
    """
    name = getattr(method, "__name__", "")
    if name.startswith(_NEVER_EVENTS):
        raise TypeError(f"{name} cannot be a channel-layer event handler")
    method.__secure_ws_event__ = True  # type: ignore[attr-defined]
    return method


def collect_event_handlers(cls: type) -> frozenset[str]:
    """Return the names of ``cls``'s methods marked :func:`event_handler`, inherited too."""
    names: set[str] = set()
    for klass in reversed(cls.__mro__):
        for name, value in vars(klass).items():
            if getattr(value, "__secure_ws_event__", False):
                names.add(name)
    return frozenset(names)


def deliver(state: ConnectionState, event: Message) -> None:
    """Queue ``event`` for the loop serving ``state`` (dropped when it is not serving)."""
    if state.wake is None:
        return  # not serving (yet, or any more)
    if state.inbox is None:
        state.inbox = []
    state.inbox.append(event)
    _wake_up(state)


def _wake_up(state: ConnectionState, _done: object = None) -> None:
    wake = state.wake
    if wake is not None and not wake.done():
        wake.set_result(None)


async def open_channel(consumer: LoopConsumer) -> str:
    """Return ``consumer``'s channel-layer channel, creating it on first use.

    From then on the loop also reads channel-layer events (groups, ``kick_channel``).
    """
    if not consumer.channel_name:
        state = consumer.state
        if state.channel_failed:
            raise RuntimeError("the channel-layer receive failed")
        name = await consumer.channel_layer.new_channel()
        consumer.channel_name = name
        state.info.channel_name = name  # what kick_channel names, and the audit record
        install_drop_monitor()
        if state.wake is not None:
            _receive_channel(consumer)
    return consumer.channel_name


def _receive_channel(consumer: LoopConsumer) -> None:
    state = consumer.state
    receive = consumer.channel_layer.receive(consumer.channel_name)
    task: asyncio.Future[Message] = asyncio.ensure_future(receive)
    task.add_done_callback(lambda done: _wake_up(state))
    state.channel_task = task


async def serve(consumer: LoopConsumer, scope: Message, receive: Any, send: Any) -> None:
    """Serve one connection until ``consumer`` stops (its ``__call__``)."""
    consumer.scope = scope
    consumer.base_send = send
    consumer.channel_layer = get_channel_layer(consumer.channel_layer_alias)
    state = consumer.state
    loop = asyncio.get_running_loop()
    state.wake = loop.create_future()

    def wake(_done: object) -> None:
        _wake_up(state)

    client: asyncio.Future[Message] = asyncio.ensure_future(receive())
    client.add_done_callback(wake)
    if consumer.channel_name:
        _receive_channel(consumer)
    try:
        while True:
            await state.wake
            state.wake = loop.create_future()
            if client.done():
                await dispatch_transport(consumer, client.result())
                client = asyncio.ensure_future(receive())
                client.add_done_callback(wake)
            events, state.inbox = state.inbox, None
            for event in events or ():
                await dispatch_event(consumer, event)
            channel = state.channel_task
            if channel is not None and channel.done():
                await _channel_done(consumer, channel)
    except StopConsumer:
        pass
    finally:
        state.inbox = state.wake = None
        tasks = [task for task in (client, state.channel_task) if task is not None]
        for task in tasks:
            task.cancel()
        try:
            # Clean up first (registry, audit, caps): the connection's end must not
            # wait for its sources to unwind.
            await consumer.finish()
        finally:
            await _reap(tasks)
            await _close_old_database_connections()


async def _channel_done(consumer: LoopConsumer, channel: asyncio.Future[Message]) -> None:
    if channel.exception() is not None:
        state = consumer.state
        state.channel_task = None
        state.channel_failed = True
        # Its groups and kick_channel cannot reach the connection any more: fail closed.
        logger.warning(
            "channel layer receive failed (%s): closing connection_id=%s",
            type(channel.exception()).__name__,
            state.info.connection_id,
        )
        if state.accepted:
            await consumer.close_with(CloseCode.TRY_AGAIN_LATER, Reason.BACKEND_UNAVAILABLE)
        return
    _receive_channel(consumer)
    await dispatch_event(consumer, channel.result())


async def dispatch_transport(consumer: LoopConsumer, message: Message) -> None:
    """Route a client ASGI message to its ``websocket_*`` method; ignore anything else."""
    kind = message.get("type")
    if kind == "websocket.receive":
        await consumer.websocket_receive(message)
    elif kind == "websocket.connect":
        await consumer.websocket_connect(message)
    elif kind == "websocket.disconnect":
        await consumer.websocket_disconnect(message)


def handler_for_event(
    consumer: LoopConsumer, kind: object
) -> Callable[[Message], Awaitable[None]] | None:
    """Return the method that handles channel-layer event type ``kind``, if allowed."""
    if not isinstance(kind, str) or len(kind) > MAX_EVENT_TYPE_CHARS:
        return None
    name = kind.replace(".", "_")
    if name not in consumer.event_handlers:
        return None
    handler: Callable[[Message], Awaitable[None]] = getattr(consumer, name)
    return handler


async def dispatch_event(consumer: LoopConsumer, event: Message) -> None:
    """Run the handler of a channel-layer event; a failure never ends the connection."""
    kind = event.get("type") if isinstance(event, dict) else None
    handler = handler_for_event(consumer, kind)
    if handler is None:
        _event_dropped(consumer.state, kind)
        return
    try:
        await handler(event)
    except StopConsumer:
        raise
    except Exception:
        consumer.state.handler_error(f"event {kind!s:.64}")


def _event_dropped(state: ConnectionState, kind: object) -> None:
    """Log a channel-layer event that names no allowed handler (it is dropped).

    secure_ws' own events (``secure_ws.*``) reach every connection of a user, and a
    consumer that has no use for one (a folder re-check on a chat consumer) drops it
    quietly; anything else is a wiring mistake or a forged event, logged as a warning.
    """
    connection_id = state.info.connection_id
    if isinstance(kind, str) and kind.startswith("secure_ws."):
        logger.debug("ignored secure_ws event: type=%.64r connection_id=%s", kind, connection_id)
        return
    logger.warning(
        "dropped channel-layer event without a handler: type=%.64r connection_id=%s",
        kind,
        connection_id,
    )


def _retrieve(task: asyncio.Future[Any]) -> None:
    _unwinding.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved, so asyncio does not log it as never retrieved


async def _reap(tasks: list[asyncio.Future[Any]]) -> None:
    """Wait briefly for cancelled ``tasks``; leave the slow ones to end on their own."""
    pending = [task for task in tasks if not task.done()]
    if pending:
        _, pending_set = await asyncio.wait(pending, timeout=REAP_WAIT)
        for task in pending_set:
            _unwinding.add(task)
            task.add_done_callback(_retrieve)
    for task in tasks:
        if task.done():
            _retrieve(task)


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
