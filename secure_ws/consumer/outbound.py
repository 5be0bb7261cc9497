"""How a connection's frames and closes reach the client, with its unread output bounded.

Every close follows the same rules, whoever decides it: an ``error`` frame carrying the
reason first (daphne drops close reasons, daphne#374), then the close code, or its 4xxx
stand-in where the server cannot send it (:func:`close_transport`).

Output a client leaves unread is bounded (``MAX_PENDING_OUTPUT``, see
:mod:`secure_ws.consumer.backpressure`): before each frame :func:`send_text` reads the
server's buffer; past the bound it closes 4429 ``slow_consumer`` and aborts the socket if
the close cannot be flushed (:func:`close_slow_consumer`). On uvicorn, whose ``send``
waits for the socket to drain, the same close follows a send that waits longer than
``PENDING_OUTPUT_TIMEOUT``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Protocol

from pydantic import BaseModel

from secure_ws.codes import CloseCode, ErrorCode, Reason, private_close_code
from secure_ws.consumer.backpressure import SLOW_CLOSE_GRACE
from secure_ws.consumer.state import ConnectionState

logger = logging.getLogger("secure_ws.consumer")

#: What the client reads in the ``detail`` of a close's ``error`` frame.
CLOSE_DETAILS: dict[Reason, str] = {
    Reason.TOKEN_EXPIRED: "The access token expired.",
    Reason.SESSION_EXPIRED: "The login session expired.",
    Reason.CONNECTION_TOO_OLD: "The connection reached its maximum age; authenticate again.",
    Reason.REVOKED: "The connection was revoked.",
    Reason.IDLE_TIMEOUT: "The connection was idle for too long.",
    Reason.TOO_MANY_VIOLATIONS: "Too many invalid messages.",
    Reason.RATE_LIMITED: "Too many messages.",
    Reason.BINARY_NOT_ALLOWED: "Binary frames are not accepted.",
    Reason.TOO_LARGE: "The message is too large.",
    Reason.FORBIDDEN: "The token belongs to another user.",
    Reason.BACKEND_UNAVAILABLE: "Try again later.",
    Reason.SLOW_CONSUMER: "Too much unread output.",
}


class Sender(Protocol):
    """What sending needs of a consumer (``SecureJsonWebsocketConsumer`` provides it)."""

    state: ConnectionState
    base_send: Any

    async def close(self, code: int | bool | None = None, reason: str | None = None) -> None: ...
    def security_event(self, kind: str, detail: str) -> None: ...
    async def send_message(
        self, type: str, payload: BaseModel | dict[str, Any] | None = None, id: str | None = None
    ) -> None: ...
    async def send_error(
        self,
        code: ErrorCode | Reason,
        detail: str = "",
        errors: list[dict[str, object]] | None = None,
        client_id: str | None = None,
    ) -> None: ...


def encode_frame(
    type: str, payload: BaseModel | dict[str, Any] | None = None, id: str | None = None
) -> str:
    """Return the JSON text of ``{"type", "id"?, "payload"}``."""
    if isinstance(payload, BaseModel):
        payload = payload.model_dump(mode="json", exclude_none=True)
    frame: dict[str, Any] = {"type": type}
    if id is not None:
        frame["id"] = id
    frame["payload"] = {} if payload is None else payload
    return json.dumps(frame, separators=(",", ":"), allow_nan=False)


async def send_text(consumer: Sender, text: str) -> None:
    """Send one text frame, or close a client that leaves too much output unread."""
    state = consumer.state
    output, traffic = state.output, state.traffic
    if output is not None:
        # The hot path: a few attribute reads on the transport, no syscall, no Redis.
        pending = output.pending()
        if pending > output.max_pending:
            await close_slow_consumer(consumer, pending)
            return
        if pending and output.blocking:
            # The server's send may wait for the client to read: bound that wait.
            try:
                async with asyncio.timeout(output.timeout):
                    sent = await _send(consumer, text)
            except TimeoutError:
                await close_slow_consumer(consumer, output.pending())
                return
            if sent and traffic is not None:
                traffic.sent(len(text))
            return
    if await _send(consumer, text) and traffic is not None:
        traffic.sent(len(text))


async def _send(consumer: Sender, text: str) -> bool:
    try:
        await consumer.base_send({"type": "websocket.send", "text": text})
    except OSError:
        # The client is gone (uvicorn raises ClientDisconnected, an OSError); its
        # websocket.disconnect is queued and ends the connection: nothing to report.
        consumer.state.closing = True
        return False
    return True


async def close_slow_consumer(consumer: Sender, pending: int) -> None:
    """Close a client that does not read with 4429 ``slow_consumer``; free its socket.

    The ``error`` frame and the close queue behind the unread output, so they reach
    the client only if it reads within :data:`SLOW_CLOSE_GRACE` seconds; then the
    transport is aborted, dropping its buffer, whatever the client does.
    """
    state = consumer.state
    if state.closing:
        return
    code = CloseCode.RATE_LIMITED
    state.closing = True
    state.close_code = int(code)
    state.info.close_reason = Reason.SLOW_CONSUMER.value
    state.timers.cancel()
    logger.warning(
        "slow consumer: %d bytes unread, closing connection_id=%s",
        pending,
        state.info.connection_id,
    )
    consumer.security_event(
        Reason.SLOW_CONSUMER.value, f"close {int(code)}: {pending} bytes unread"
    )
    error = encode_frame(
        "error",
        {"code": Reason.SLOW_CONSUMER.value, "detail": CLOSE_DETAILS[Reason.SLOW_CONSUMER]},
    )
    buffer = state.output.buffer if state.output is not None else None
    try:
        async with asyncio.timeout(SLOW_CLOSE_GRACE):
            await consumer.base_send({"type": "websocket.send", "text": error})
            await close_transport(consumer, int(code), Reason.SLOW_CONSUMER.value)
    except TimeoutError:
        if buffer is not None:
            buffer.abort()
        return
    except Exception:
        logger.warning("closing a slow consumer failed: connection_id=%s", state.info.connection_id)
    if buffer is not None:
        buffer.abort_later(SLOW_CLOSE_GRACE)


async def close_transport(consumer: Sender, code: int, reason: str) -> None:
    """Send the close; fall back to the 4xxx stand-in when the server refuses ``code``.

    daphne (autobahn) refuses every standard code but 1000, see
    :func:`~secure_ws.codes.private_close_code`.
    """
    try:
        await consumer.close(code=code, reason=reason)
    except Exception:
        fallback = private_close_code(code)
        if fallback == code:
            raise
        logger.debug("server refused close code %s; closing with %s", code, fallback)
        consumer.state.close_code = fallback
        await consumer.close(code=fallback, reason=reason)


async def send_event(
    consumer: Sender, type: str, payload: BaseModel | dict[str, Any] | None = None
) -> bool:
    """Send a fan-out event unless the client leaves too much unread; return whether sent.

    Drops are counted on ``ConnectionInfo.events_dropped``; the first one is a
    ``slow_consumer`` security event.
    """
    state = consumer.state
    if state.closing:
        return False
    pending = state.output.drop_event() if state.output is not None else 0
    if pending:
        if state.info.events_dropped == 1:
            consumer.security_event(
                Reason.SLOW_CONSUMER.value, f"events dropped: {pending} bytes unread"
            )
        return False
    await consumer.send_message(type, payload)
    return True


async def close_with(
    consumer: Sender,
    code: CloseCode,
    reason: Reason,
    detail: str = "",
    client_id: str | None = None,
) -> None:
    """Close an open connection: an ``error`` frame with ``reason``, then the close."""
    state = consumer.state
    if state.closing:
        return
    detail = detail or CLOSE_DETAILS.get(reason, "")
    await consumer.send_error(reason, detail, client_id=client_id)
    if state.closing:
        return  # that frame found a slow consumer (now closed) or a client gone
    state.closing = True
    state.close_code = int(code)
    state.info.close_reason = reason.value
    state.timers.cancel()
    if code != CloseCode.NORMAL:
        consumer.security_event(reason.value, f"close {int(code)}")
    await close_transport(consumer, int(code), reason.value)
