"""Every use of a dependency's private internals, in one place, each pinned by a test.

Besides the output buffers below: daphne's access log (a stream, not a logger, see
:func:`wrap_daphne_access_log`), daphne's WebSocket factory options
(:func:`close_instead_of_drop`) and Django's robust-signal failure log
(:class:`SignalWithoutFailureLog`).

secure_ws bounds the output a client has not read (``MAX_PENDING_OUTPUT``). ASGI gives an
application no way to see that: daphne's ``send`` never waits (autobahn writes each frame
into the Twisted transport's buffer, which grows for as long as the client does not read),
while uvicorn's ``send`` waits for the socket to drain. So the consumer finds the
connection's transport behind the ``send`` callable and reads its buffer:

- **daphne**: the server hands the application ``functools.partial(server.handle_reply,
  protocol)``; ``protocol`` is an autobahn ``WebSocketServerProtocol`` whose ``transport``
  is a Twisted ``FileDescriptor``. Its unsent bytes are ``len(dataBuffer) - offset +
  _tempDataLen`` (``twisted/internet/abstract.py``). When a middleware hides the partial,
  the connection is found in the server's ``connections`` dict by its application task,
  the same lookup of daphne servers that graceful shutdown uses (:func:`daphne_servers`).
- **uvicorn**: its ``send`` is a bound method of its protocol object, whose ``transport``
  is an asyncio (or uvloop) transport: ``get_write_buffer_size()``, a public asyncio API.

``tests/test_compat.py`` fails loudly when daphne, Twisted or uvicorn change any of this.
Nothing here runs a syscall: :meth:`OutputBuffer.pending` reads a few attributes, so the
consumer can afford it before every frame.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import sys
from collections.abc import Callable
from typing import Any

from django.dispatch import Signal

logger = logging.getLogger("secure_ws.compat")

#: How many wrappers (middleware objects, partials, bound methods) are looked through.
MAX_SEND_WRAPPERS = 8


# ---------------------------------------------------------------------- daphne servers


def twisted_reactor() -> Any:
    """The installed Twisted reactor (imports it: call only inside a daphne process)."""
    # Imported here: importing the reactor installs one, which only daphne may choose.
    from twisted.internet import reactor

    return reactor


def daphne_servers(reactor: Any = None) -> list[Any]:
    """The daphne ``Server`` objects of this process (none outside a daphne process).

    daphne keeps its connections on the server object (``server.connections``: protocol ->
    ``{"application_instance": task, ...}``) and exposes no registry, so the servers are
    found through the bound method each one registers as its "before shutdown" trigger
    (on ``reactor``, by default the installed one).
    """
    if reactor is None:
        if "daphne.server" not in sys.modules or "twisted.internet.reactor" not in sys.modules:
            return []
        reactor = twisted_reactor()
    event = getattr(reactor, "_eventTriggers", {}).get("shutdown")
    servers: list[Any] = []
    for trigger in getattr(event, "before", []) if event is not None else []:
        owner = getattr(trigger[0], "__self__", None)
        if owner is not None and hasattr(owner, "connections") and owner not in servers:
            servers.append(owner)
    return servers


def close_instead_of_drop(reactor: Any = None) -> bool:
    """Have daphne's autobahn send a close frame where it would drop the TCP connection.

    autobahn's ``failByDrop`` (on by default, and daphne keeps it) answers a message over
    ``--websocket-max-message-size`` (or a protocol error) by dropping the socket: the
    client sees 1006 and cannot tell a refusal from a crash. Off, autobahn sends the close
    (1009 for a message too big), discards the rest of the message unread into memory, and
    still drops a peer that does not answer within its close-handshake timeout. daphne
    builds ``server.ws_factory`` in ``Server.run()`` after loading the application, so the
    option is set once the reactor runs.

    Returns:
        ``True`` when scheduled (a daphne process), ``False`` elsewhere.
    """
    if reactor is None:
        if "daphne.server" not in sys.modules or "twisted.internet.reactor" not in sys.modules:
            return False
        reactor = twisted_reactor()

    def apply() -> None:
        for server in daphne_servers(reactor):
            factory = getattr(server, "ws_factory", None)
            if factory is not None:
                # setProtocolOptions resets allowNullOrigin to its False default unless
                # passed: keep daphne's value (the gate, not autobahn, judges Origin).
                factory.setProtocolOptions(
                    failByDrop=False, allowNullOrigin=factory.allowNullOrigin
                )

    reactor.callWhenRunning(apply)
    return True


def _is_daphne_websocket(candidate: object) -> bool:
    module = sys.modules.get("daphne.ws_protocol")
    return module is not None and isinstance(candidate, module.WebSocketProtocol)


def _daphne_protocol_of_task(task: asyncio.Task[Any] | None) -> Any | None:
    # O(connections): only when no middleware-free path to the partial exists.
    if task is None:
        return None
    for server in daphne_servers():
        for protocol, details in list(server.connections.items()):
            if details.get("application_instance") is task and _is_daphne_websocket(protocol):
                return protocol
    return None


# ---------------------------------------------------------------------- output buffers


class OutputBuffer:
    """The unsent output of one connection, as the server buffers it.

    Attributes:
        server: ``"daphne"`` or ``"asyncio"`` (uvicorn and similar servers).
        blocking: whether the server's ``send`` waits while this buffer is full (uvicorn),
            so that a stalled client shows up as a ``send`` that does not return rather
            than as a growing buffer.
    """

    server = ""
    blocking = False

    def pending(self) -> int:
        """Bytes written by the application that the client has not yet taken."""
        raise NotImplementedError

    def abort(self) -> None:
        """Drop the connection now, discarding what is buffered (idempotent)."""
        raise NotImplementedError

    def socket(self) -> Any | None:
        """The connection's socket object, or ``None`` when the transport hides it."""
        raise NotImplementedError

    def limit_socket_buffer(self, nbytes: int) -> None:
        """Cap the kernel's send buffer of the socket at ``nbytes`` (Linux doubles it).

        Linux grows a socket's send buffer up to ``net.ipv4.tcp_wmem`` (4 MiB by default)
        for a peer that does not read: kernel memory the server holds on top of its own
        buffer. One ``setsockopt`` when the connection opens; failures are ignored (the
        transport's own buffer is still bounded).
        """
        sock = self.socket()
        if sock is None:
            return
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, nbytes)
        except (OSError, AttributeError, ValueError):
            logger.debug("could not cap the socket's send buffer", exc_info=True)

    def abort_later(self, delay: float) -> None:
        """Abort after ``delay`` seconds unless the connection is closed by then."""
        asyncio.get_running_loop().call_later(delay, self._abort_quietly)

    def _abort_quietly(self) -> None:
        try:
            self.abort()
        except Exception:
            logger.exception("aborting a slow consumer's transport failed")


class TwistedOutputBuffer(OutputBuffer):
    """A daphne connection: autobahn protocol over a Twisted ``FileDescriptor``."""

    server = "daphne"
    blocking = False
    __slots__ = ("protocol", "transport")

    def __init__(self, protocol: Any) -> None:
        self.protocol = protocol
        transport = protocol.transport
        # TLS (``TLSMemoryBIOProtocol``) wraps the TCP transport: measure the socket's.
        for _ in range(MAX_SEND_WRAPPERS):
            if hasattr(transport, "_tempDataLen") or not hasattr(transport, "transport"):
                break
            transport = transport.transport
        self.transport = transport

    def pending(self) -> int:
        """``len(dataBuffer) - offset + _tempDataLen`` of the Twisted transport."""
        transport = self.transport
        return len(transport.dataBuffer) - transport.offset + transport._tempDataLen  # type: ignore[no-any-return]

    def socket(self) -> Any | None:
        """``transport.getHandle()``: the TCP transport's socket (``None`` once it is gone).

        Twisted deletes the socket attribute when the connection is lost, so a client that
        hangs up before the consumer accepts leaves ``getHandle()`` raising.
        """
        get_handle = getattr(self.transport, "getHandle", None)
        if get_handle is None:
            return None
        try:
            return get_handle()
        except AttributeError:
            return None

    def abort(self) -> None:
        """``dropConnection(abort=True)``: autobahn's own abort, which aborts the socket."""
        protocol = self.protocol
        if protocol.state != protocol.STATE_CLOSED:
            protocol.dropConnection(abort=True)
        else:
            self.transport.abortConnection()


class AsyncioOutputBuffer(OutputBuffer):
    """An asyncio transport (uvicorn): ``get_write_buffer_size()``; its ``send`` waits."""

    server = "asyncio"
    blocking = True
    __slots__ = ("transport",)

    def __init__(self, transport: asyncio.WriteTransport) -> None:
        self.transport = transport

    def pending(self) -> int:
        """``transport.get_write_buffer_size()`` (public asyncio API, no syscall)."""
        return self.transport.get_write_buffer_size()

    def socket(self) -> Any | None:
        """``transport.get_extra_info("socket")`` (public asyncio API)."""
        return self.transport.get_extra_info("socket")

    def abort(self) -> None:
        """``transport.abort()``: close now, dropping the buffer (a no-op once closed)."""
        self.transport.abort()


def _send_chain(send: Any) -> list[Any]:
    """``send`` and what it wraps: partials, bound methods' owners, ``_send`` attributes."""
    chain: list[Any] = []
    current = send
    for _ in range(MAX_SEND_WRAPPERS):
        if current is None or any(current is seen for seen in chain):
            break
        chain.append(current)
        if isinstance(current, functools.partial):
            chain.extend(current.args[:1])
            current = current.func
        elif hasattr(current, "__self__"):
            current = current.__self__
        else:
            # Wrappers like secure_ws.gate.guard.Progress keep the inner send as ``_send``.
            current = getattr(current, "_send", None)
    return chain


def _asyncio_transport(owner: object) -> asyncio.WriteTransport | None:
    if not type(owner).__module__.startswith("uvicorn."):
        return None
    transport = getattr(owner, "transport", None)
    # Duck-typed: uvloop's transports implement the API without subclassing asyncio's.
    if all(hasattr(transport, name) for name in ("get_write_buffer_size", "abort")):
        return transport
    return None


def find_output_buffer(send: Any) -> OutputBuffer | None:
    """Return the output buffer of the connection that ``send`` writes to, if known.

    Call it from the connection's application task (the consumer does, at accept).
    Returns ``None`` under a server this module does not know; the caller then cannot
    bound unread output and should say so once.
    """
    chain = _send_chain(send)
    for candidate in chain:
        if _is_daphne_websocket(candidate):
            return TwistedOutputBuffer(candidate)
        transport = _asyncio_transport(candidate)
        if transport is not None:
            return AsyncioOutputBuffer(transport)
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no running loop: no application task to look for
        task = None
    protocol = _daphne_protocol_of_task(task)
    if protocol is not None:
        return TwistedOutputBuffer(protocol)
    return None


# ---------------------------------------------------------------------- daphne access log


def wrap_daphne_access_log(rewrite: Callable[[str], str]) -> bool:
    """Pass the request field of every daphne access-log entry through ``rewrite``.

    daphne writes its access log to a stream through ``AccessLogGenerator.write_entry(host,
    date, request, ...)``, bypassing :mod:`logging` and so any filter. The method is
    wrapped once, at class level, so the generator daphne's command line already built is
    covered too.

    Returns:
        ``True`` when daphne is installed (and its access log now rewritten).
    """
    try:
        from daphne.access import AccessLogGenerator
    except ImportError:  # daphne is optional: nothing to wrap
        return False
    original: Callable[..., Any] = AccessLogGenerator.write_entry
    if getattr(original, "_secure_ws_wrapped", False):
        return True

    def write_entry(
        self: Any, host: Any, date: Any, request: Any, *args: Any, **kwargs: Any
    ) -> Any:
        return original(self, host, date, rewrite(str(request)), *args, **kwargs)

    write_entry._secure_ws_wrapped = True  # type: ignore[attr-defined]
    AccessLogGenerator.write_entry = write_entry
    return True


# ---------------------------------------------------------------------- django signals


class SignalWithoutFailureLog(Signal):
    """A Django signal whose ``send_robust``/``asend_robust`` leave failure logging to us.

    Django logs every failing receiver itself, without the connection it concerns;
    :func:`secure_ws.signals.send` logs it once, with it. ``_log_robust_failure`` is a
    private hook of ``django.dispatch.Signal`` (Django 5.x and 6.x): if it is renamed,
    failures are logged twice and ``tests/test_compat.py`` fails.
    """

    def _log_robust_failure(self, receiver: object, err: Exception) -> None:
        return None
