"""A Channels consumer that keeps client messages and channel-layer events apart.

Channels merges the client's ASGI messages and channel-layer events into one
``dispatch()`` that maps any ``type`` to a method. :class:`SplitDispatchConsumer` reads
the two sources separately instead:

- client (transport) messages only ever reach ``websocket_connect``, ``websocket_receive``
  and ``websocket_disconnect``;
- channel-layer events keep Channels' naming (``"chat.line"`` → ``chat_line``) but can
  never reach a ``handle_`` or ``websocket_`` method or a name in
  :attr:`~SplitDispatchConsumer.reserved_event_handlers`; an event without a handler is
  dropped and reported instead of killing the connection (Channels raises ``ValueError``);
- a failing channel-layer receive is reported to :meth:`channel_layer_failed` while the
  client keeps being served;
- events delivered in-process (:meth:`deliver_event`, how the connection registry hands
  over per-user events) go through the same event dispatch, in the same loop, so they
  never run beside a client message;
- :meth:`finish` runs however the loop ends, including cancellation.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ClassVar

from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer

Message = dict[str, Any]

#: Longest channel-layer event type that is looked up at all.
MAX_EVENT_TYPE_CHARS = 100


#: Seconds a consumer waits for its cancelled sources before leaving them to finish alone.
#: A channels-redis receive cancelled in the middle of a Redis command can take a second
#: or more to unwind; nothing the consumer does depends on it.
REAP_WAIT = 0.1

# Cancelled sources still unwinding: the loop holds only weak references to tasks.
_unwinding: set[asyncio.Future[Any]] = set()


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


async def _never() -> Message:
    # Stands in for a failed channel-layer receive so the loop keeps serving the client.
    await asyncio.Event().wait()
    return {}


class SplitDispatchConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]
    """``AsyncWebsocketConsumer`` with separate dispatch for client messages and events."""

    #: Method names a channel-layer event may never name (the consumer's own machinery).
    reserved_event_handlers: ClassVar[frozenset[str]] = frozenset()
    #: Events delivered in-process, waiting for the loop (a list only once one arrives).
    _inbox: list[Message] | None = None
    #: Completed by :meth:`deliver_event` to wake the loop (exists while serving).
    _inbox_ready: asyncio.Future[None] | None = None

    def deliver_event(self, event: Message) -> None:
        """Queue ``event`` for :meth:`dispatch_event` in this consumer's own loop.

        Only server code calls it (the connection registry); it is never fed client data.
        """
        ready = self._inbox_ready
        if ready is None:
            return  # not serving (yet, or any more)
        if self._inbox is None:
            self._inbox = []
        self._inbox.append(event)
        if not ready.done():
            ready.set_result(None)

    async def __call__(self, scope: Message, receive: Any, send: Any) -> None:
        """Serve one connection until the consumer stops."""
        self.scope = scope
        self.base_send = send
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        sources: list[Callable[[], Awaitable[Message]]] = [receive]
        dispatchers: list[Callable[[Message], Coroutine[Any, Any, None]]] = [
            self.dispatch_transport
        ]
        if self.channel_layer is not None:
            self.channel_name = await self.channel_layer.new_channel()
            self.channel_receive = functools.partial(self.channel_layer.receive, self.channel_name)
            sources.append(self.channel_receive)
            dispatchers.append(self.dispatch_event)
        tasks: list[asyncio.Future[Any]] = [asyncio.ensure_future(source()) for source in sources]
        # The in-process inbox: one future (no task) that deliver_event() completes.
        loop = asyncio.get_running_loop()
        self._inbox_ready = loop.create_future()
        tasks.append(self._inbox_ready)
        inbox_index = len(tasks) - 1
        try:
            while True:
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for index, task in enumerate(tasks):
                    if not task.done():
                        continue
                    if index == inbox_index:
                        self._inbox_ready = tasks[index] = loop.create_future()
                        events, self._inbox = self._inbox or [], None
                        for event in events:
                            await self.dispatch_event(event)
                        continue
                    if index and task.exception() is not None:
                        await self.channel_layer_failed(task.exception())
                        tasks[index] = asyncio.ensure_future(_never())
                        continue
                    message = task.result()
                    await dispatchers[index](message)
                    tasks[index] = asyncio.ensure_future(sources[index]())
        except StopConsumer:
            pass
        finally:
            self._inbox = self._inbox_ready = None
            for task in tasks:
                task.cancel()
            try:
                # Clean up first (registry, audit, caps): the connection's end must not
                # wait for its sources to unwind.
                await self.finish()
            finally:
                await _reap(tasks)

    async def dispatch_transport(self, message: Message) -> None:
        """Route a client ASGI message to its ``websocket_*`` method; ignore anything else."""
        kind = message.get("type")
        if kind == "websocket.receive":
            await self.websocket_receive(message)
        elif kind == "websocket.connect":
            await self.websocket_connect(message)
        elif kind == "websocket.disconnect":
            await self.websocket_disconnect(message)

    def event_handler(self, kind: object) -> Callable[[Message], Awaitable[None]] | None:
        """Return the method that handles channel-layer event type ``kind``, if allowed."""
        if not isinstance(kind, str) or len(kind) > MAX_EVENT_TYPE_CHARS:
            return None
        name = kind.replace(".", "_")
        if name.startswith(("_", "handle_", "websocket_")):
            return None
        if name in type(self).reserved_event_handlers:
            return None
        handler = getattr(self, name, None)
        return handler if callable(handler) else None

    async def dispatch_event(self, event: Message) -> None:
        """Run the handler of a channel-layer event; a failure never ends the connection."""
        kind = event.get("type") if isinstance(event, dict) else None
        handler = self.event_handler(kind)
        if handler is None:
            self.event_dropped(kind)
            return
        try:
            await handler(event)
        except StopConsumer:
            raise
        except Exception:
            self.event_failed(kind)

    def event_dropped(self, kind: object) -> None:
        """Report a channel-layer event that names no allowed handler."""

    def event_failed(self, kind: object) -> None:
        """Report a channel-layer event handler that raised (called inside ``except``)."""

    async def channel_layer_failed(self, exc: BaseException | None) -> None:
        """React to a failing channel-layer receive; the client is still served."""

    async def finish(self) -> None:
        """Run once when the consumer stops, however it stops."""
