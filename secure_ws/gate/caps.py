"""Gate step 6: how many connections one user and one client IP may hold at once.

Every open WebSocket pins a socket, a task and memory on a server process; without a cap
one account or one address can hold thousands (OWASP WebSocket cheat sheet, "limit the
number of connections"). Slots are counted across every process through Redis: one sorted
set per user and per IP (IPv6 by its /64) whose members are connection ids scored by the
time the slot expires. A live connection's score is refreshed every
``CONNECTION_SLOT_TTL / 3`` seconds by its process's one heartbeat and removed when it ends
(batched per process, :mod:`secure_ws.gate.slots`); a slot of a crashed process stops
counting after ``CONNECTION_SLOT_TTL`` seconds on its own. Acquiring checks and takes both
slots atomically in the handshake's admission script (:mod:`secure_ws.gate.admission`):
when the credentials step sits right outside this one, it took the slot in its own call
already and this step only holds it. Without Redis the counts are in-process.
"""

from __future__ import annotations

from typing import Any

from secure_ws.conf import get_settings
from secure_ws.connection import ConnectionInfo, get_connection_info
from secure_ws.exceptions import Refused
from secure_ws.gate.admission import (
    ADMISSION_SCOPE_KEY,
    CAP_REASONS,
    Admission,
    AdmissionRequest,
    CapRequest,
    run_admission,
    take_throttle,
)
from secure_ws.gate.base import ASGIApp, Scope
from secure_ws.gate.refusal import refuse
from secure_ws.gate.slots import ConnectionSlot, heartbeat_for_loop, local_slots
from secure_ws.gate.throttle import rate_key_for
from secure_ws.state import key

__all__ = ["ConnectionCapMiddleware", "ConnectionSlot", "acquire_slot"]

#: In-process slot sets (tests clear it between runs).
_local_slots = local_slots

#: The running loop's heartbeat (tests look at its task).
_heartbeat_for_loop = heartbeat_for_loop


def ip_slot_key(client_ip: str) -> str:
    """Return the slot set of a client address (IPv6 by its /64)."""
    return key("caps", "ip", rate_key_for(client_ip))


async def acquire_slot(
    slot_id: str,
    user_id: object,
    client_ip: str,
    user_limit: int,
    ip_limit: int,
    ttl: int,
    scope: Scope | None = None,
) -> ConnectionSlot:
    """Take a slot for ``slot_id`` in the user's and the IP's caps.

    With ``scope``, a handshake token the throttle step deferred is taken in the same call.

    Raises:
        Refused: ``user_connection_limit``, ``ip_connection_limit`` (or
            ``handshake_rate_limited`` for a deferred token).
        BackendUnavailable: Redis is configured but did not answer (fail closed).
    """
    caps = CapRequest(slot_id, ip_slot_key(client_ip), user_limit, ip_limit, ttl)
    admitted = await run_admission(
        AdmissionRequest(
            throttle=take_throttle(scope) if scope is not None else None,
            user_id=None if user_id is None else str(user_id),
            caps=caps,
        )
    )
    if admitted.verdict in CAP_REASONS:
        raise Refused(CAP_REASONS[admitted.verdict], "connection cap reached")
    assert admitted.slot is not None  # "ok" with caps asked for always carries the slot
    return admitted.slot


class ConnectionCapMiddleware:
    """Hold a per-user and per-IP connection slot while the inner application runs.

    Args:
        application: the inner ASGI application.
        max_per_user: connections per user (None: ``MAX_CONNECTIONS_PER_USER``).
        max_per_ip: connections per client IP (None: ``MAX_CONNECTIONS_PER_IP``).
        slot_ttl: seconds a slot outlives a crashed process (None: ``CONNECTION_SLOT_TTL``).
    """

    def __init__(
        self,
        application: ASGIApp,
        max_per_user: int | None = None,
        max_per_ip: int | None = None,
        slot_ttl: int | None = None,
    ) -> None:
        self.application = application
        self.max_per_user = max_per_user
        self.max_per_ip = max_per_ip
        self.slot_ttl = slot_ttl

    def cap_request(self, scope: Scope) -> CapRequest:
        """The slots this step would take for ``scope`` (the credentials step asks for them)."""
        settings = get_settings()
        info = get_connection_info(scope)
        return CapRequest(
            info.connection_id,
            ip_slot_key(info.client_ip),
            settings.MAX_CONNECTIONS_PER_USER if self.max_per_user is None else self.max_per_user,
            settings.MAX_CONNECTIONS_PER_IP if self.max_per_ip is None else self.max_per_ip,
            settings.CONNECTION_SLOT_TTL if self.slot_ttl is None else self.slot_ttl,
        )

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope.get("type") != "websocket":
            await self.application(scope, receive, send)
            return
        try:
            slot = await self.admit(scope, get_connection_info(scope))
        except Refused as refusal:
            await refuse(scope, receive, send, refusal)
            return
        finally:
            scope.pop(ADMISSION_SCOPE_KEY, None)
        slot.start_heartbeat()
        get_connection_info(scope).release_slot = slot.release
        try:
            await self.application(scope, receive, send)
        finally:
            await slot.release()

    async def admit(self, scope: Scope, info: ConnectionInfo) -> ConnectionSlot:
        """Return the connection's slot, not yet heartbeating; the caller releases it.

        The credentials step took it in its admission call when it could; otherwise it is
        taken now, with any deferred handshake token.

        Raises:
            Refused: a cap is full (or the deferred token's bucket is empty).
            BackendUnavailable: Redis is configured but did not answer (fail closed).
        """
        admission = scope.get(ADMISSION_SCOPE_KEY)
        slot = admission.slot if isinstance(admission, Admission) else None
        if slot is not None:
            return slot
        return await self._acquire(scope, info)

    async def _acquire(self, scope: Scope, info: ConnectionInfo) -> ConnectionSlot:
        request = self.cap_request(scope)
        user = scope.get("user")
        user_id: object = info.user_id
        if user is not None and getattr(user, "is_authenticated", False):
            # Keyed like the credentials step keys it: by simplejwt's USER_ID_FIELD.
            from rest_framework_simplejwt.settings import api_settings

            user_id = getattr(user, api_settings.USER_ID_FIELD, user_id)
        return await acquire_slot(
            request.slot_id,
            user_id,
            info.client_ip,
            request.user_limit,
            request.ip_limit,
            request.ttl,
            scope,
        )
