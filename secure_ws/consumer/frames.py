"""One client frame's way to its handler (the per-message hot path).

In this order, for every text frame: size and the per-connection buckets
(:mod:`secure_ws.consumer.traffic`), one pydantic pass over envelope and payload
(:mod:`secure_ws.consumer.messages`), the message type's permissions, then the
``handle_<type>`` coroutine. Binary frames close 1003 unless the consumer allows them.
A failing handler or decoder is answered ``server_error`` and never ends the connection.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from secure_ws.codes import CloseCode, ErrorCode, Reason
from secure_ws.consumer.messages import ClientMessage, FrameRejected, extract_client_id
from secure_ws.consumer.traffic import ConnectionTraffic
from secure_ws.exceptions import MessageRejected

if TYPE_CHECKING:
    from secure_ws.consumer.secure import SecureJsonWebsocketConsumer

Message = dict[str, Any]


async def receive(consumer: SecureJsonWebsocketConsumer, message: Message) -> None:
    """Check, validate and dispatch one client frame."""
    state = consumer.state
    traffic = state.traffic
    if state.closing or not state.accepted or traffic is None:
        return
    text = message.get("text")
    if text is None:
        await _receive_binary(consumer, traffic, message.get("bytes") or b"")
        return
    nbytes = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
    if not await _admit_frame(consumer, traffic, nbytes, text):
        return
    try:
        decoded = consumer.message_registry.decode(text, max_depth=traffic.limits.max_json_depth)
    except FrameRejected as exc:
        await consumer.reject(exc, exc.client_id)
        return
    except Exception:
        # A decoder bug must not end the connection (or the server) either.
        state.handler_error("decode")
        await consumer.send_error(ErrorCode.SERVER_ERROR, "Internal error")
        return
    await _dispatch_message(consumer, decoded)


async def _admit_frame(
    consumer: SecureJsonWebsocketConsumer,
    traffic: ConnectionTraffic,
    nbytes: int,
    text: str | None,
) -> bool:
    verdict = traffic.received(nbytes)
    if verdict.close is not None:
        await consumer.close_with(*verdict.close)
    elif verdict.rejection is not None:
        # Echo the client id of a rate-limited frame; an oversized one is not parsed.
        rate_limited = verdict.rejection.code == ErrorCode.RATE_LIMITED
        client_id = extract_client_id(text) if rate_limited and text is not None else None
        await consumer.reject(verdict.rejection, client_id, violation=verdict.violation)
    return verdict.admitted


async def _receive_binary(
    consumer: SecureJsonWebsocketConsumer, traffic: ConnectionTraffic, data: bytes
) -> None:
    if not traffic.limits.allow_binary:
        traffic.received(len(data))
        await consumer.close_with(CloseCode.UNSUPPORTED_DATA, Reason.BINARY_NOT_ALLOWED)
        return
    if not await _admit_frame(consumer, traffic, len(data), None):
        return
    try:
        await consumer.receive_bytes(data)
    except MessageRejected as exc:
        await consumer.reject(exc)
    except Exception:
        consumer.state.handler_error("receive_bytes")
        await consumer.send_error(ErrorCode.SERVER_ERROR, "Internal error")


async def _dispatch_message(
    consumer: SecureJsonWebsocketConsumer, message: ClientMessage[Any]
) -> None:
    spec = consumer.message_registry.specs[message.type]
    try:
        for permission in consumer.permissions_by_type[message.type]:
            allowed = permission.has_permission(consumer, message)
            if not isinstance(allowed, bool):
                allowed = await allowed
            if not allowed:
                await consumer.reject(MessageRejected(ErrorCode.FORBIDDEN, "Forbidden"), message.id)
                return
        await getattr(consumer, spec.handler_name)(message)
    except MessageRejected as exc:
        await consumer.reject(exc, message.id)
    except Exception:
        consumer.state.handler_error(spec.handler_name)
        await consumer.send_error(ErrorCode.SERVER_ERROR, "Internal error", client_id=message.id)
