"""The consumer's receive loop: client messages and channel-layer events kept apart.

Why this re-implements Channels' ``AsyncConsumer.__call__``: Channels reads the client's
ASGI messages and channel-layer events into one ``dispatch()`` that maps any ``type`` to
the method of that name, so a channel-layer event typed ``websocket.disconnect`` or
``close`` would run that method (``tests/test_compat.py`` pins that upstream behaviour;
if it changes, this loop may become unnecessary). :class:`SplitDispatchConsumer` reads the
two sources separately instead:

- client (transport) messages only ever reach ``websocket_connect``, ``websocket_receive``
  and ``websocket_disconnect``;
- channel-layer events reach only methods marked :func:`event_handler` (an allow-list, with
  Channels' naming: ``"chat.line"`` runs ``chat_line``); any other type is dropped and
  reported instead of killing the connection (Channels raises ``ValueError``);
- the channel-layer channel is created lazily, at the first :meth:`open_channel` (the
  first group joined): a connection that never joins a group costs no ``new_channel()``,
  no receive task and no receive buffer; revocation reaches it through the per-process
  registry (:mod:`secure_ws.sessions`);
- a failing channel-layer receive is reported to :meth:`channel_layer_failed` while the
  client keeps being served;
- events delivered in-process (:meth:`deliver_event`, how the connection registry hands
  over per-user events) go through the same event dispatch, in the same loop, so they
  never run beside a client message;
- :meth:`finish` runs however the loop ends, including cancellation.

It also skips the thread hop Channels' ``dispatch()`` makes before every handler
(``aclose_old_connections``).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, TypeVar

from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer

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

# Cancelled sources still unwinding: the loop holds only weak references to tasks.
_unwinding: set[asyncio.Future[Any]] = set()


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


class SplitDispatchConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]
    """``AsyncWebsocketConsumer`` with separate dispatch for client messages and events."""

    #: Method names channel-layer events may run (collected from :func:`event_handler`).
    event_handlers: ClassVar[frozenset[str]] = frozenset()
    #: The channel-layer channel, once :meth:`open_channel` made it ("" until then).
    channel_name: str = ""
    #: Completed to wake the loop (a source finished, or an event was delivered).
    _wake: asyncio.Future[None] | None = None
    #: Events delivered in-process, waiting for the loop (a list only once one arrives).
    _inbox: list[Message] | None = None
    #: The running channel-layer receive (None: no channel yet, or its receive failed).
    _channel_task: asyncio.Future[Message] | None = None
    _channel_failed: bool = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.event_handlers = collect_event_handlers(cls)

    def deliver_event(self, event: Message) -> None:
        """Queue ``event`` for :meth:`dispatch_event` in this consumer's own loop.

        Only server code calls it (the connection registry); it is never fed client data.
        """
        if self._wake is None:
            return  # not serving (yet, or any more)
        if self._inbox is None:
            self._inbox = []
        self._inbox.append(event)
        self._wake_up()

    def _wake_up(self, _done: object = None) -> None:
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    async def open_channel(self) -> str:
        """Return this connection's channel-layer channel, creating it on first use.

        From then on the loop also reads channel-layer events (groups, ``kick_channel``).
        """
        if not self.channel_name:
            if self._channel_failed:
                raise RuntimeError("the channel-layer receive failed")
            name = await self.channel_layer.new_channel()
            self.channel_name = name
            self.channel_receive = functools.partial(self.channel_layer.receive, name)
            self.channel_opened(name)
            if self._wake is not None:
                self._receive_channel()
        return self.channel_name

    def _receive_channel(self) -> None:
        task: asyncio.Future[Message] = asyncio.ensure_future(self.channel_receive())
        task.add_done_callback(self._wake_up)
        self._channel_task = task

    async def __call__(self, scope: Message, receive: Any, send: Any) -> None:
        """Serve one connection until the consumer stops."""
        self.scope = scope
        self.base_send = send
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        loop = asyncio.get_running_loop()
        self._wake = loop.create_future()
        client: asyncio.Future[Message] = asyncio.ensure_future(receive())
        client.add_done_callback(self._wake_up)
        if self.channel_name:
            self._receive_channel()
        try:
            while True:
                await self._wake
                self._wake = loop.create_future()
                if client.done():
                    message = client.result()
                    await self.dispatch_transport(message)
                    client = asyncio.ensure_future(receive())
                    client.add_done_callback(self._wake_up)
                events, self._inbox = self._inbox, None
                for event in events or ():
                    await self.dispatch_event(event)
                channel = self._channel_task
                if channel is not None and channel.done():
                    await self._channel_done(channel)
        except StopConsumer:
            pass
        finally:
            self._inbox = self._wake = None
            tasks = [task for task in (client, self._channel_task) if task is not None]
            for task in tasks:
                task.cancel()
            try:
                # Clean up first (registry, audit, caps): the connection's end must not
                # wait for its sources to unwind.
                await self.finish()
            finally:
                await _reap(tasks)

    async def _channel_done(self, channel: asyncio.Future[Message]) -> None:
        if channel.exception() is not None:
            self._channel_task = None
            self._channel_failed = True
            await self.channel_layer_failed(channel.exception())
            return
        self._receive_channel()
        await self.dispatch_event(channel.result())

    async def dispatch_transport(self, message: Message) -> None:
        """Route a client ASGI message to its ``websocket_*`` method; ignore anything else."""
        kind = message.get("type")
        if kind == "websocket.receive":
            await self.websocket_receive(message)
        elif kind == "websocket.connect":
            await self.websocket_connect(message)
        elif kind == "websocket.disconnect":
            await self.websocket_disconnect(message)

    def handler_for_event(self, kind: object) -> Callable[[Message], Awaitable[None]] | None:
        """Return the method that handles channel-layer event type ``kind``, if allowed."""
        if not isinstance(kind, str) or len(kind) > MAX_EVENT_TYPE_CHARS:
            return None
        name = kind.replace(".", "_")
        if name not in self.event_handlers:
            return None
        handler: Callable[[Message], Awaitable[None]] = getattr(self, name)
        return handler

    async def dispatch_event(self, event: Message) -> None:
        """Run the handler of a channel-layer event; a failure never ends the connection."""
        kind = event.get("type") if isinstance(event, dict) else None
        handler = self.handler_for_event(kind)
        if handler is None:
            self.event_dropped(kind)
            return
        try:
            await handler(event)
        except StopConsumer:
            raise
        except Exception:
            self.event_failed(kind)

    def channel_opened(self, name: str) -> None:
        """Note the new channel-layer channel ``name`` (for the audit record)."""

    def event_dropped(self, kind: object) -> None:
        """Report a channel-layer event that names no allowed handler."""

    def event_failed(self, kind: object) -> None:
        """Report a channel-layer event handler that raised (called inside ``except``)."""

    async def channel_layer_failed(self, exc: BaseException | None) -> None:
        """React to a failing channel-layer receive; the client is still served."""

    async def finish(self) -> None:
        """Run once when the consumer stops, however it stops."""
