"""The one function every refused connection goes through.

It logs once with the connection id, records the attempt in the audit sink, sends the
``connection_refused`` signal, and then answers the client: HTTP 403 before the WebSocket
opens (``REFUSAL_MODE = "reject"``), or accept, an ``error`` frame and a close code
(``"close"``) for clients that need the reason. Never deny silently (channels#2062).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from secure_ws import signals
from secure_ws.audit.sink import get_audit_sink
from secure_ws.codes import APP_SUBPROTOCOL, private_close_code
from secure_ws.conf import get_settings
from secure_ws.connection import get_connection_info
from secure_ws.exceptions import Refused

logger = logging.getLogger("secure_ws.gate")

Scope = dict[str, Any]
Message = dict[str, Any]


def record_refusal(scope: Scope, refusal: Refused) -> None:
    """Log, audit and signal a refusal without answering the client."""
    info = get_connection_info(scope)
    logger.warning(
        "connection refused: reason=%s connection_id=%s client_ip=%s path=%s detail=%s",
        refusal.reason.value,
        info.connection_id,
        info.client_ip,
        info.path,
        refusal.detail,
    )
    try:
        get_audit_sink().connection_refused(info, refusal.reason)
    except Exception:
        # Logging failures never decide a connection; the refusal stands.
        logger.exception("audit sink failed for connection_id=%s", info.connection_id)
    signals.connection_refused.send(sender=None, info=info, reason=refusal.reason)


async def refuse(
    scope: Scope, receive: Any, send: Any, refusal: Refused, *, connect_received: bool = False
) -> None:
    """Refuse the connection in ``scope`` for ``refusal.reason`` and answer the client.

    Args:
        scope: the connection scope; its ConnectionInfo is logged and audited.
        receive: the ASGI receive callable.
        send: the ASGI send callable.
        refusal: why; only ``refusal.reason`` reaches the client.
        connect_received: the application already took the ``websocket.connect``
            message off the queue, so do not wait for it.
    """
    record_refusal(scope, refusal)
    if not connect_received:
        message = await receive()
        if message.get("type") != "websocket.connect":
            return
    if get_settings().REFUSAL_MODE == "close":
        accept: Message = {"type": "websocket.accept"}
        if APP_SUBPROTOCOL in scope.get("subprotocols", ()):
            accept["subprotocol"] = APP_SUBPROTOCOL
        await send(accept)
        frame = {"type": "error", "payload": {"code": refusal.reason.value}}
        await send({"type": "websocket.send", "text": json.dumps(frame)})
        await send(
            {
                "type": "websocket.close",
                # daphne (autobahn) cannot send 1xxx codes but 1000: use the 4xxx stand-in.
                "code": private_close_code(int(refusal.close_code)),
                "reason": refusal.reason.value,
            }
        )
    else:
        await send({"type": "websocket.close"})
