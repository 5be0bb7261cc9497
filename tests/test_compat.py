"""Pins of the server internals :mod:`secure_ws.compat` relies on.

Each test fails loudly, naming what changed, when daphne, Twisted, autobahn or uvicorn
change an internal that bounding unread output depends on. Fix ``secure_ws/compat.py``,
not these tests.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from daphne.server import Server
from daphne.ws_protocol import WebSocketProtocol
from twisted.internet import abstract, tcp

from secure_ws.compat import (
    AsyncioOutputBuffer,
    TwistedOutputBuffer,
    daphne_servers,
    find_output_buffer,
    twisted_reactor,
)
from secure_ws.gate.guard import Progress

pytestmark = pytest.mark.unit


class _QuietReactor:
    """Just enough of a reactor for a ``FileDescriptor`` that is never really polled."""

    def addWriter(self, writer: Any) -> None:
        pass

    def removeWriter(self, writer: Any) -> None:
        pass


def twisted_transport() -> Any:
    transport = abstract.FileDescriptor(reactor=_QuietReactor())
    transport.connected = 1
    return transport


def daphne_protocol(transport: Any) -> Any:
    protocol = WebSocketProtocol()
    protocol.transport = transport
    return protocol


def test_twisted_keeps_unsent_bytes_where_compat_reads_them() -> None:
    transport = twisted_transport()
    buffer = TwistedOutputBuffer(daphne_protocol(transport))
    assert buffer.pending() == 0
    transport.write(b"a" * 100)
    transport.write(b"b" * 50)
    # Twisted 26: writes wait in _tempDataBuffer/_tempDataLen until doWrite moves them.
    assert transport._tempDataLen == 150, "twisted.internet.abstract changed _tempDataLen"
    assert buffer.pending() == 150
    transport.writeSomeData = lambda data: 60  # the kernel takes 60 bytes
    transport.doWrite()
    # ... then into dataBuffer, with offset marking what the socket took.
    assert (len(transport.dataBuffer), transport.offset) == (150, 60), (
        "twisted.internet.abstract changed dataBuffer/offset"
    )
    assert buffer.pending() == 90
    transport.writeSomeData = lambda data: len(data)
    transport.doWrite()
    assert buffer.pending() == 0
    # The kernel's send buffer is capped through the TCP transport's socket.
    assert callable(getattr(tcp.Connection, "getHandle", None)), "tcp.Connection.getHandle gone"
    assert callable(getattr(tcp.Connection, "abortConnection", None))


async def test_daphne_hands_the_application_a_partial_around_its_protocol() -> None:
    captured: dict[str, Any] = {}

    async def application(scope: Any, receive: Any, send: Any) -> None:
        captured["send"] = send
        captured["task"] = asyncio.current_task()
        # Behind a middleware that wraps send in a closure, the partial is out of reach:
        # the lookup falls back to the server's connections, by application task.

        async def hidden(message: Any) -> None:
            await send(message)

        captured["through_closure"] = find_output_buffer(hidden)

    server = Server(application=application, endpoints=["tcp:port=0:interface=127.0.0.1"])
    server.connections = {}
    protocol = daphne_protocol(twisted_transport())
    server.connections[protocol] = {"connected": 0.0}
    reactor = twisted_reactor()
    trigger = reactor.addSystemEventTrigger("before", "shutdown", server.kill_all_applications)
    try:
        assert server in daphne_servers(), "daphne no longer registers kill_all_applications"
        server.create_application(protocol, {"type": "websocket"})
        task = server.connections[protocol]["application_instance"]
        await task
    finally:
        reactor.removeSystemEventTrigger(trigger)
    assert captured["task"] is task, "daphne no longer runs the application in its own task"
    direct = find_output_buffer(captured["send"])
    assert isinstance(direct, TwistedOutputBuffer), "daphne's send is no longer a partial"
    assert direct.protocol is protocol
    # The gate wraps send in an object that keeps the inner one as ``_send``.
    wrapped = find_output_buffer(Progress(None, captured["send"]).send)
    assert isinstance(wrapped, TwistedOutputBuffer)
    assert wrapped.protocol is protocol
    assert isinstance(captured["through_closure"], TwistedOutputBuffer)
    assert captured["through_closure"].protocol is protocol


def test_a_client_gone_before_accept_leaves_no_socket_and_no_error() -> None:
    # Twisted deletes tcp.Connection.socket when the connection is lost; a client that
    # hangs up before the consumer accepts must not turn capping the buffer into a crash.
    lost = tcp.Connection.__new__(tcp.Connection)
    with pytest.raises(AttributeError):
        lost.getHandle()
    buffer = TwistedOutputBuffer(daphne_protocol(lost))
    assert buffer.socket() is None
    buffer.limit_socket_buffer(4096)


def test_an_abort_goes_through_autobahn_and_drops_the_twisted_socket() -> None:
    aborted: list[bool] = []
    transport = twisted_transport()
    transport.abortConnection = lambda: aborted.append(True)
    protocol = daphne_protocol(transport)
    protocol.state = protocol.STATE_OPEN
    protocol.wasClean = True
    TwistedOutputBuffer(protocol).abort()
    assert aborted == [True], "autobahn's dropConnection(abort=True) no longer aborts"
    assert protocol.state == protocol.STATE_CLOSED


async def test_uvicorn_send_is_a_method_of_a_protocol_with_an_asyncio_transport() -> None:
    from uvicorn.config import Config
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
    from uvicorn.server import ServerState

    async def app(scope: Any, receive: Any, send: Any) -> None:
        pass

    config = Config(app=app, ws="websockets-sansio", lifespan="off")
    config.load()
    loop = asyncio.get_running_loop()
    protocol = WebSocketsSansIOProtocol(config, ServerState(), {}, _loop=loop)
    server_side, client_side = socket.socketpair()
    client_side.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        transport, _ = await loop.connect_accepted_socket(lambda: protocol, server_side)
        buffer = find_output_buffer(Progress(None, protocol.send).send)
        assert isinstance(buffer, AsyncioOutputBuffer), "uvicorn's send/transport changed"
        assert buffer.blocking
        transport.write(b"x" * 4_000_000)  # the peer never reads
        assert buffer.pending() == transport.get_write_buffer_size() > 0
        buffer.limit_socket_buffer(65536)
        sock = transport.get_extra_info("socket")
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) <= 2 * 65536
        buffer.abort()
        assert transport.is_closing()
        await asyncio.sleep(0)
        assert buffer.pending() == 0
    finally:
        client_side.close()


async def test_an_unknown_server_is_reported_as_unknown() -> None:
    queue: asyncio.Queue[Any] = asyncio.Queue()  # what channels' test communicator sends to
    assert find_output_buffer(queue.put) is None
    assert find_output_buffer(Progress(None, queue.put).send) is None


def test_daphne_access_log_entry_still_takes_the_request_third() -> None:
    # wrap_daphne_access_log rewrites the third argument of write_entry (the request line).
    import inspect

    from daphne.access import AccessLogGenerator

    parameters = list(inspect.signature(AccessLogGenerator.write_entry).parameters)
    assert parameters[:4] == ["self", "host", "date", "request"], (
        "daphne changed AccessLogGenerator.write_entry: fix compat.wrap_daphne_access_log"
    )


def test_django_signal_still_has_the_robust_failure_hook() -> None:
    # SignalWithoutFailureLog overrides it so that a failing receiver is logged once.
    from django.dispatch import Signal

    from secure_ws.compat import SignalWithoutFailureLog

    assert callable(getattr(Signal, "_log_robust_failure", None)), (
        "Django renamed Signal._log_robust_failure: fix compat.SignalWithoutFailureLog"
    )
    assert "_log_robust_failure" in vars(SignalWithoutFailureLog)


# ---------------------------------------------------------------------- Channels' consumer
# secure_ws.consumer.loop re-implements AsyncConsumer.__call__ (client frames must never
# reach dispatch()). These pin what that re-implementation relies on.


async def test_channels_dispatch_still_maps_any_type_to_the_method_of_that_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Why the receive loop is ours: Channels' dispatch runs whatever method a type names."""
    from channels.consumer import AsyncConsumer

    async def no_hop() -> None:
        pass

    monkeypatch.setattr("channels.consumer.aclose_old_connections", no_hop)
    reached: list[str] = []

    class Probe(AsyncConsumer):  # type: ignore[misc]
        async def websocket_disconnect(self, message: dict[str, Any]) -> None:
            reached.append(message["type"])

    # A channel-layer event and a client message take the same path in Channels.
    await Probe().dispatch({"type": "websocket.disconnect"})
    assert reached == ["websocket.disconnect"], (
        "channels' AsyncConsumer.dispatch no longer maps types to methods: "
        "secure_ws.consumer.loop may no longer need its own receive loop"
    )


async def test_channels_consumer_call_sets_only_the_attributes_our_loop_sets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Our loop sets scope, base_send, channel_layer (and the channel lazily): nothing else."""
    from channels.exceptions import StopConsumer
    from channels.generic.websocket import AsyncWebsocketConsumer
    from channels.layers import InMemoryChannelLayer

    layer = InMemoryChannelLayer()
    monkeypatch.setattr("channels.consumer.get_channel_layer", lambda alias: layer)

    async def no_hop() -> None:
        pass

    monkeypatch.setattr("channels.consumer.aclose_old_connections", no_hop)
    seen: set[str] = set()

    class Probe(AsyncWebsocketConsumer):  # type: ignore[misc]
        async def websocket_connect(self, message: dict[str, Any]) -> None:
            seen.update(vars(self))
            raise StopConsumer()

    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    inbox.put_nowait({"type": "websocket.connect"})

    async def send(message: dict[str, Any]) -> None:
        pass

    probe = Probe()
    before = set(vars(probe))
    await asyncio.wait_for(probe({"type": "websocket"}, inbox.get, send), 5)
    assert seen - before == {
        "scope",
        "base_send",
        "channel_layer",
        "channel_name",
        "channel_receive",
    }, "channels' AsyncConsumer.__call__ sets other attributes: update consumer.loop.serve"
