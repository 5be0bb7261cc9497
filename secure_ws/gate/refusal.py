"""The one function every refused connection goes through.

It logs once with the connection id, records the attempt in the audit sink, sends the
``connection_refused`` signal, and then answers the client: HTTP 403 before the WebSocket
opens (``REFUSAL_MODE = "reject"``, the default outside ``DEBUG``), or accept, an ``error``
frame and a close code (``"close"``, the default under ``DEBUG``) so that a developer sees
the reason. Never deny silently (channels#2062).

Two refusals stay a plain 403 in every mode: the handshake throttle's and the guard's
(unknown route, unexpected error). Both are what a flood or a broken application produces;
accepting them would hold a socket open for a close handshake exactly when the server can
least afford it, and the guard's application state is unknown.

Every refusal is audited, exactly; the log line is not always written: under a flood only
a bounded number per reason and interval are, plus one summary line with the count of the
rest (:mod:`secure_ws.gate.refusal_log`), so a refused flood cannot fill the disk or bury
other lines. The detail is escaped (:func:`~secure_ws.logsafe.escape_for_log`): it may
quote client input.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from secure_ws import signals
from secure_ws.audit.sink import get_audit_sink
from secure_ws.codes import APP_SUBPROTOCOL, Reason, private_close_code
from secure_ws.conf import get_settings
from secure_ws.connection import ConnectionInfo, get_connection_info
from secure_ws.exceptions import Refused
from secure_ws.gate.refusal_log import RefusalLogLimiter, Suppressed
from secure_ws.logsafe import escape_for_log

logger = logging.getLogger("secure_ws.gate")

Scope = dict[str, Any]
Message = dict[str, Any]


#: Reasons answered with a plain 403 whatever ``REFUSAL_MODE`` says (see the module doc).
PLAIN_REASONS = frozenset({Reason.HANDSHAKE_RATE_LIMITED})

#: The process's refusal log limiter.
refusal_log_limiter = RefusalLogLimiter()


def _log_suppressed(summaries: list[Suppressed]) -> None:
    for summary in summaries:
        logger.warning(
            "... and %d more connection refusals with reason=%s in the last %g s "
            "(not logged one by one; each is audited)",
            summary.count,
            summary.reason,
            summary.seconds,
        )


def _log_ended_windows() -> None:
    """Timer callback: report what was suppressed once the flood has stopped."""
    _log_suppressed(refusal_log_limiter.take_ended(get_settings().REFUSAL_LOG_INTERVAL))


def log_refusal(info: ConnectionInfo, refusal: Refused) -> None:
    """Write the refusal's log line, unless its reason is flooding (then count it)."""
    settings = get_settings()
    reason = refusal.reason.value
    admission = refusal_log_limiter.admit(
        reason, settings.REFUSAL_LOG_LINES, settings.REFUSAL_LOG_INTERVAL
    )
    _log_suppressed(admission.ended)
    if admission.summary_due_in is not None:
        # Report the window's count when it ends, even if the flood stops before then.
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            pass  # no loop: the next refusal logs the summary
        else:
            loop.call_later(admission.summary_due_in + 0.01, _log_ended_windows)
    if not admission.log:
        return
    logger.warning(
        "connection refused: reason=%s connection_id=%s client_ip=%s path=%s detail=%s",
        reason,
        info.connection_id,
        info.client_ip,
        info.path,
        escape_for_log(refusal.detail),
    )


async def record_refusal(scope: Scope, refusal: Refused) -> None:
    """Log (bounded under a flood), audit (always) and signal a refusal without answering.

    A receiver of ``connection_refused`` that raises is logged and ignored: the refusal
    is answered exactly as without it (see :mod:`secure_ws.signals`).
    """
    info = get_connection_info(scope)
    log_refusal(info, refusal)
    try:
        get_audit_sink().connection_refused(info, refusal.reason)
    except Exception:
        # Logging failures never decide a connection; the refusal stands.
        logger.exception("audit sink failed for connection_id=%s", info.connection_id)
    await signals.send(signals.connection_refused, info=info, reason=refusal.reason)


async def refuse(
    scope: Scope,
    receive: Any,
    send: Any,
    refusal: Refused,
    *,
    connect_received: bool = False,
    plain: bool = False,
) -> None:
    """Refuse the connection in ``scope`` for ``refusal.reason`` and answer the client.

    Args:
        scope: the connection scope; its ConnectionInfo is logged and audited.
        receive: the ASGI receive callable.
        send: the ASGI send callable.
        refusal: why; only ``refusal.reason`` reaches the client.
        connect_received: the application already took the ``websocket.connect``
            message off the queue, so do not wait for it.
        plain: answer with a plain 403 whatever ``REFUSAL_MODE`` says (the guard).
    """
    await record_refusal(scope, refusal)
    if not connect_received:
        message = await receive()
        if message.get("type") != "websocket.connect":
            return
    if (
        not plain
        and refusal.reason not in PLAIN_REASONS
        and get_settings().refusal_mode == "close"
    ):
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
