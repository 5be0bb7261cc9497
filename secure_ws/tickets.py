"""One-time WebSocket tickets: issue, consume, and the DRF view that hands them out.

A browser cannot set an ``Authorization`` header on a WebSocket, and a token in the URL
ends up in proxy logs. A ticket is the OWASP cheat sheet's answer: a short-lived,
single-use random string, bound to the user and to the ``Origin`` of the page that asked
for it, exchanged over an authenticated (CSRF-protected) POST and spent on the handshake as
``?ticket=``. A leaked ticket is worthless after its first use or ``TICKET_TTL`` seconds.

Tickets are stored under the SHA-256 of their value, so whoever can read Redis still
cannot replay one. Consumption is one ``GETDEL``: two handshakes racing with the same
ticket cannot both win. Without Redis tickets live in-process (one process only).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from typing import Any

import redis.exceptions
from rest_framework import status
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.authentication import JWTAuthentication

from secure_ws.conf import get_settings
from secure_ws.exceptions import BackendUnavailable
from secure_ws.state import command_deadline, get_redis, get_sync_redis, key
from secure_ws.throttling import ScopedRateThrottle

#: Random bytes in a ticket (256 bits).
TICKET_BYTES = 32

#: Longest ticket value accepted for lookup; anything longer is not one of ours.
MAX_TICKET_CHARS = 128

_local_tickets: dict[str, tuple[float, str]] = {}


def _ticket_key(ticket: str) -> str:
    return key("ticket", hashlib.sha256(ticket.encode()).hexdigest())


def _record(user_id: str, origin: str) -> str:
    return json.dumps({"user_id": user_id, "origin": origin})


def _new_ticket(user_id: int | str, origin: str) -> tuple[str, str, int]:
    """Return a fresh ticket value, the record stored for it and its lifetime in seconds."""
    ticket = secrets.token_urlsafe(TICKET_BYTES)
    return ticket, _record(str(user_id), origin), get_settings().TICKET_TTL


def _store_local(ticket: str, record: str, ttl: int) -> None:
    _prune_local()
    _local_tickets[_ticket_key(ticket)] = (time.monotonic() + ttl, record)


async def issue_ticket(user_id: int | str, origin: str) -> str:
    """Return a new single-use ticket for ``user_id``, valid from ``origin`` only.

    ``origin`` must be the normalised form (``str(parse_origin(...))``) that the origin
    step stores in the ConnectionInfo.

    Raises:
        BackendUnavailable: Redis is configured but could not store the ticket.
    """
    ticket, record, ttl = _new_ticket(user_id, origin)
    client = get_redis()
    if client is None:
        _store_local(ticket, record, ttl)
        return ticket
    try:
        async with command_deadline():
            await client.set(_ticket_key(ticket), record, ex=ttl)
    except (redis.exceptions.RedisError, OSError) as exc:
        raise BackendUnavailable("tickets: Redis unavailable") from exc
    return ticket


def issue_ticket_sync(user_id: int | str, origin: str) -> str:
    """Synchronous form of :func:`issue_ticket`, for views running in a worker thread."""
    ticket, record, ttl = _new_ticket(user_id, origin)
    client = get_sync_redis()
    if client is None:
        _store_local(ticket, record, ttl)
        return ticket
    try:
        client.set(_ticket_key(ticket), record, ex=ttl)
    except (redis.exceptions.RedisError, OSError) as exc:
        raise BackendUnavailable("tickets: Redis unavailable") from exc
    return ticket


async def consume_ticket(ticket: str, origin: str | None) -> str | None:
    """Spend ``ticket``; return its user id if it was valid for ``origin``, else ``None``.

    The ticket is gone after this call whatever the result, so a ticket presented from a
    wrong origin cannot be retried from the right one by the same attacker.

    Raises:
        BackendUnavailable: Redis is configured but did not answer (fail closed).
    """
    if not ticket or len(ticket) > MAX_TICKET_CHARS:
        return None
    ticket_key = _ticket_key(ticket)
    client = get_redis()
    raw: Any
    if client is None:
        entry = _local_tickets.pop(ticket_key, None)
        raw = entry[1] if entry is not None and entry[0] > time.monotonic() else None
    else:
        try:
            async with command_deadline():
                raw = await client.getdel(ticket_key)
        except (redis.exceptions.RedisError, OSError) as exc:
            raise BackendUnavailable("tickets: Redis unavailable") from exc
    if raw is None:
        return None
    try:
        record = json.loads(raw)
        user_id, bound_origin = str(record["user_id"]), str(record["origin"])
    except (ValueError, KeyError, TypeError):
        return None
    if origin is None or not secrets.compare_digest(bound_origin, origin):
        return None
    return user_id


def _prune_local() -> None:
    now = time.monotonic()
    for stale in [k for k, (expires, _) in _local_tickets.items() if expires <= now]:
        del _local_tickets[stale]


class WebSocketTicketView(APIView):
    """``POST /api/ws-ticket/``: a one-time ticket for the caller's next WebSocket handshake.

    Authenticated by session (CSRF enforced, as DRF's ``SessionAuthentication`` does) or by
    a JWT. The request must carry an ``Origin`` the gate would accept; the ticket is bound
    to it, so a ticket obtained by one page cannot open a socket from another origin.
    """

    authentication_classes = [JWTAuthentication, SessionAuthentication]
    permission_classes = [IsAuthenticated]
    # Tickets are credentials: their issuance is throttled per user (DRF scope "ws_ticket",
    # default 30/min, see secure_ws.throttling).
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "ws_ticket"

    def post(self, request: Request) -> Response:
        """Issue a ticket: 201 ``{"ticket", "expires_in"}``; 403 for a missing/foreign Origin."""
        from rest_framework_simplejwt.settings import api_settings

        from secure_ws.gate.origin import default_policy, parse_origin

        raw_origin = request.headers.get("Origin")
        origin = parse_origin(raw_origin) if raw_origin else None
        scheme = "wss" if request.is_secure() else "ws"
        if origin is None or not default_policy().allows(
            origin, scheme=scheme, host=request.get_host()
        ):
            return Response(
                {"detail": "An allowed Origin header is required.", "code": "origin_refused"},
                status=status.HTTP_403_FORBIDDEN,
                headers={"Cache-Control": "no-store"},
            )
        user_id = getattr(request.user, api_settings.USER_ID_FIELD)
        try:
            ticket = issue_ticket_sync(user_id, str(origin))
        except BackendUnavailable:
            return Response(
                {"detail": "Try again later.", "code": "backend_unavailable"},
                status=status.HTTP_503_SERVICE_UNAVAILABLE,
                headers={"Cache-Control": "no-store"},
            )
        return Response(
            {"ticket": ticket, "expires_in": get_settings().TICKET_TTL},
            status=status.HTTP_201_CREATED,
            headers={"Cache-Control": "no-store"},
        )
