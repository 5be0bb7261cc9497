"""Graceful shutdown under daphne: a real "going away" close and a flushed audit trail.

daphne's own SIGTERM handling (``Server.kill_all_applications``, a Twisted "before
shutdown" trigger) cancels every application task and lets the reactor drop the sockets:
clients see 1006 and the audit records of those closes may never be written. This module
adds a second "before shutdown" trigger that sends every open WebSocket a real 1001 close
frame (autobahn refuses 1001 through ``sendClose``, so it goes through ``sendCloseFrame``,
as daphne does for 1011), and a "during shutdown" trigger that flushes the audit writer
in a worker thread once the cancelled consumers have recorded their closes (a cancelled
secure_ws consumer records ``connection_closed`` with 1001, see
:meth:`~secure_ws.consumer.secure.SecureJsonWebsocketConsumer.finish`).

Nothing happens outside a daphne process: under uvicorn (which sends 1012 itself) or in
tests no Twisted reactor is installed and :func:`install_daphne_shutdown` does nothing.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

from secure_ws.audit.writer import get_writer
from secure_ws.codes import CloseCode
from secure_ws.compat import daphne_servers, twisted_reactor

logger = logging.getLogger("secure_ws.shutdown")

_installed = False

#: How long shutdown waits for the clients to answer the close (then drops them anyway).
CLOSE_WAIT_SECONDS = 3.0
POLL_SECONDS = 0.05


def install_daphne_shutdown() -> bool:
    """Register the shutdown triggers once, if this process runs daphne's Twisted reactor.

    Returns:
        ``True`` if the triggers are (now or already) registered, ``False`` when the
        process does not run daphne, in which case nothing is registered.
    """
    global _installed
    if _installed:
        return True
    if "daphne.server" not in sys.modules or "twisted.internet.reactor" not in sys.modules:
        return False
    reactor = twisted_reactor()
    reactor.addSystemEventTrigger("before", "shutdown", _close_and_wait)
    reactor.addSystemEventTrigger("during", "shutdown", _flush_audit_in_thread)
    _installed = True
    return True


def close_daphne_websockets() -> list[Any]:
    """Send a 1001 close frame to every open WebSocket of this daphne process.

    Returns:
        The protocols that were sent the close frame. Errors are logged, never raised:
        shutdown must go on.
    """
    closed: list[Any] = []
    for server in daphne_servers():
        for protocol in list(server.connections):
            if not hasattr(protocol, "sendCloseFrame"):
                continue  # an HTTP request, not a WebSocket
            if getattr(protocol, "state", None) != getattr(protocol, "STATE_OPEN", object()):
                continue
            try:
                protocol.sendCloseFrame(code=int(CloseCode.GOING_AWAY), isReply=False)
            except Exception:
                logger.exception("sending the going-away close failed")
                continue
            closed.append(protocol)
    logger.info("shutdown: sent going-away close to %d WebSocket(s)", len(closed))
    return closed


def _close_and_wait() -> Any:
    """Send the closes, then let the reactor run until they are written (bounded).

    The reactor's own shutdown drops every socket without writing what is still
    buffered, so the "before" phase waits for the closing handshakes to finish, at most
    :data:`CLOSE_WAIT_SECONDS`.
    """
    # Twisted is daphne's: imported only when daphne runs this (not a dependency otherwise).
    from twisted.internet import defer, task

    protocols = close_daphne_websockets()
    done: defer.Deferred[None] = defer.Deferred()
    deadline = CLOSE_WAIT_SECONDS / POLL_SECONDS

    def check(round_: list[int]) -> None:
        round_[0] += 1
        open_ = [
            p for p in protocols if getattr(p, "state", None) != getattr(p, "STATE_CLOSED", None)
        ]
        if not open_ or round_[0] >= deadline:
            done.callback(None)
        else:
            task.deferLater(twisted_reactor(), POLL_SECONDS, check, round_)

    check([0])
    return done


def _flush_audit_in_thread() -> Any:
    """Flush the audit writer in a worker thread (Django's ORM refuses the event loop's)."""
    # Twisted is daphne's: imported only when daphne runs this.
    from twisted.internet import threads

    deferred = threads.deferToThread(flush_audit)
    deferred.addErrback(lambda failure: logger.error("audit flush at shutdown failed: %s", failure))
    return deferred


def flush_audit() -> bool:
    """Write every buffered audit record now; ``False`` if the database failed."""
    try:
        return get_writer().flush()
    except Exception:
        logger.exception("audit flush at shutdown failed")
        return False


async def lifespan(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """ASGI lifespan application: flush the audit writer when the server shuts down.

    uvicorn ends a SIGTERM by re-raising the signal with the default handler once its
    graceful shutdown is over, so the process dies without running ``atexit`` and the
    audit writer's exit flush never runs: the records still buffered (up to
    ``AUDIT_FLUSH_INTERVAL`` of them) would be lost. uvicorn does send the lifespan
    ``shutdown`` event after the last connection closed; route ``"lifespan"`` to this in
    ``ProtocolTypeRouter`` and run uvicorn with ``--lifespan on`` (docs/deploy.md). daphne
    sends no lifespan events; its flush is the reactor trigger above.
    """
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            # The ORM refuses the event loop's thread.
            await asyncio.to_thread(flush_audit)
            await send({"type": "lifespan.shutdown.complete"})
            return
