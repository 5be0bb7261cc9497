"""The shape every gate step shares: check the scope, pass on or refuse.

A step is a small ASGI middleware (channels' ``OriginValidator`` style). Its
:meth:`GateStep.check` either returns, and the inner application runs, or raises
:class:`~secure_ws.exceptions.Refused`, and the connection goes to
:func:`~secure_ws.gate.refusal.refuse`: the inner application never runs.
"""

from __future__ import annotations

from typing import Any

from secure_ws.connection import ConnectionInfo, get_connection_info
from secure_ws.exceptions import Refused
from secure_ws.gate.admission import settle_throttle
from secure_ws.gate.refusal import refuse

Scope = dict[str, Any]
ASGIApp = Any


async def settled(scope: Scope, refusal: Refused) -> Refused:
    """Return the refusal to send once a deferred handshake token is taken.

    A client whose bucket is empty is refused ``handshake_rate_limited`` whatever else
    was wrong with its handshake, as if the throttle had run first (it counts first).
    """
    try:
        await settle_throttle(scope)
    except Refused as throttled:
        return throttled
    return refusal


class GateStep:
    """Base class of a gate step; subclasses implement :meth:`check`."""

    def __init__(self, application: ASGIApp) -> None:
        self.application = application

    async def check(self, scope: Scope, info: ConnectionInfo) -> None:
        """Inspect ``scope`` and fill ``info`` (its ConnectionInfo); raise ``Refused`` to refuse.

        Runs before the handshake is answered and returns: nothing of a step stays alive
        for the connection (:class:`~secure_ws.gate.stack.Gate` runs the checks in turn).
        """
        raise NotImplementedError

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope.get("type") != "websocket":
            await self.application(scope, receive, send)
            return
        try:
            await self.check(scope, get_connection_info(scope))
        except Refused as refusal:
            await refuse(scope, receive, send, await settled(scope, refusal))
            return
        await self.application(scope, receive, send)
