"""One-time WebSocket tickets: issue, consume, and the DRF view that hands them out.

A browser cannot set an ``Authorization`` header on a WebSocket, and a token in the URL
ends up in proxy logs. A ticket is the OWASP cheat sheet's answer: a short-lived,
single-use random string, bound to the user and to the ``Origin`` of the page that asked
for it, exchanged over an authenticated (CSRF-protected) POST and spent on the handshake as
``?ticket=``. A leaked ticket is worthless after its first use or ``TICKET_TTL`` seconds.

A ticket is no credential of its own: it records the identity it was issued for (user, the
issuing token's ``sid`` and ``exp``, or the hashed id and expiry of the Django session that
asked), and the connection it opens carries that identity, so logout, password change,
deactivation and expiry reach it like any other connection.

Tickets are stored under the SHA-256 of their value, so whoever can read Redis still
cannot replay one. Consumption is one ``GETDEL`` (inside the handshake's admission script,
:mod:`secure_ws.gate.admission`; :func:`consume_ticket` for other callers): two handshakes
racing with the same ticket cannot both win. Without Redis tickets live in-process (one
process only). Storage details are in :mod:`secure_ws.gate.ticket_store`.
"""

from __future__ import annotations

import secrets
from typing import Any

import redis.exceptions
from rest_framework import status
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from secure_ws.api.authentication import SecureJWTAuthentication
from secure_ws.api.throttling import ScopedRateThrottle
from secure_ws.codes import Reason
from secure_ws.conf import get_settings
from secure_ws.exceptions import BackendUnavailable
from secure_ws.gate.ticket_store import (
    TicketGrant,
    local_tickets,
    parse_grant,
    store_local_ticket,
    take_local_ticket,
    ticket_key,
    ticket_record,
    usable_ticket,
)
from secure_ws.state import command_deadline, get_redis, get_sync_redis

#: Random bytes in a ticket (256 bits).
TICKET_BYTES = 32

#: The in-process tickets (tests clear it between runs).
_local_tickets = local_tickets


def _grant_of(user_id: int | str | TicketGrant) -> TicketGrant:
    return user_id if isinstance(user_id, TicketGrant) else TicketGrant(user_id=str(user_id))


def _new_ticket(grant: TicketGrant, origin: str) -> tuple[str, str, int]:
    """Return a fresh ticket value, the record stored for it and its lifetime in seconds."""
    ticket = secrets.token_urlsafe(TICKET_BYTES)
    return ticket, ticket_record(grant, origin), get_settings().TICKET_TTL


async def issue_ticket(user_id: int | str | TicketGrant, origin: str) -> str:
    """Return a new single-use ticket for ``user_id`` (or a full grant), valid from ``origin``.

    ``origin`` must be the normalised form (``str(parse_origin(...))``) that the origin
    step stores in the ConnectionInfo. A bare user id gives a ticket with no credential
    expiry or session (its connection ends at ``MAX_CONNECTION_AGE``).

    Raises:
        BackendUnavailable: Redis is configured but could not store the ticket.
    """
    ticket, record, ttl = _new_ticket(_grant_of(user_id), origin)
    client = get_redis()
    if client is None:
        store_local_ticket(ticket, record, ttl)
        return ticket
    try:
        async with command_deadline():
            await client.set(ticket_key(ticket), record, ex=ttl)
    except (redis.exceptions.RedisError, OSError) as exc:
        raise BackendUnavailable("tickets: Redis unavailable") from exc
    return ticket


def issue_ticket_sync(user_id: int | str | TicketGrant, origin: str) -> str:
    """Synchronous form of :func:`issue_ticket`, for views running in a worker thread."""
    ticket, record, ttl = _new_ticket(_grant_of(user_id), origin)
    client = get_sync_redis()
    if client is None:
        store_local_ticket(ticket, record, ttl)
        return ticket
    try:
        client.set(ticket_key(ticket), record, ex=ttl)
    except (redis.exceptions.RedisError, OSError) as exc:
        raise BackendUnavailable("tickets: Redis unavailable") from exc
    return ticket


async def consume_ticket(ticket: str, origin: str | None) -> TicketGrant | None:
    """Spend ``ticket``; return its grant if it was valid for ``origin``, else ``None``.

    The ticket is gone after this call whatever the result, so a ticket presented from a
    wrong origin cannot be retried from the right one by the same attacker. The grant is
    not checked here: :func:`ticket_user` does that.

    Raises:
        BackendUnavailable: Redis is configured but did not answer (fail closed).
    """
    if not usable_ticket(ticket):
        return None
    stored_key = ticket_key(ticket)
    client = get_redis()
    raw: Any
    if client is None:
        raw = take_local_ticket(stored_key)
    else:
        try:
            async with command_deadline():
                raw = await client.getdel(stored_key)
        except (redis.exceptions.RedisError, OSError) as exc:
            raise BackendUnavailable("tickets: Redis unavailable") from exc
    return parse_grant(raw, origin)


async def ticket_user(grant: TicketGrant) -> Any:
    """Return the user a spent ticket opens a connection for, re-checking its identity.

    Between issue and spend the user may have been deactivated, changed their password or
    logged that session out, and the issuing credential may have expired: each refuses the
    ticket with the reason the gate gives the credential itself.

    Raises:
        Refused: ``credentials_invalid``, ``user_inactive``, ``token_revoked``,
            ``token_expired`` or ``session_expired``; ``BackendUnavailable`` (fail closed).
    """
    from secure_ws.gate.tokens import active_user, check_grant, check_session

    user = await active_user(grant.user_id)
    check_grant(grant, user)
    if grant.session_id:
        await check_session(grant.session_id)
    return user


def grant_for_request(request: Request) -> TicketGrant:
    """Return the identity a ticket issued to ``request`` carries.

    A token caller (:class:`~secure_ws.api.authentication.SecureJWTAuthentication`, which put
    the decoded token in ``request.auth``) passes on its token's ``sid`` and ``exp``; a
    session caller its session's hashed id and expiry.
    """
    from rest_framework_simplejwt.settings import api_settings
    from rest_framework_simplejwt.tokens import Token

    from secure_ws.gate.tokens import SESSION_ID_CLAIM, password_fingerprint
    from secure_ws.sessions.django_session import session_credential_id, session_expiry

    user: Any = request.user
    user_id = str(getattr(user, api_settings.USER_ID_FIELD))
    fingerprint = password_fingerprint(user.password or "")
    auth = request.auth
    if isinstance(auth, Token):
        session_id = auth.get(SESSION_ID_CLAIM)
        return TicketGrant(
            user_id,
            session_id if isinstance(session_id, str) and session_id else None,
            float(auth["exp"]),
            Reason.TOKEN_EXPIRED,
            fingerprint,
        )
    session = getattr(request, "session", None)
    session_key = getattr(session, "session_key", None)
    if session_key:
        return TicketGrant(
            user_id,
            session_credential_id(session_key),
            session_expiry(session),
            Reason.SESSION_EXPIRED,
            fingerprint,
        )
    return TicketGrant(user_id, password_fingerprint=fingerprint)


class WebSocketTicketView(APIView):
    """``POST /api/ws-ticket/``: a one-time ticket for the caller's next WebSocket handshake.

    Authenticated by session (CSRF enforced, as DRF's ``SessionAuthentication`` does) or by
    a JWT checked with the gate's own rules (:class:`SecureJWTAuthentication`: a token the
    gate would refuse gets no ticket, with the same reason code). The request must carry an
    ``Origin`` the gate would accept; the ticket is bound to it, so a ticket obtained by one
    page cannot open a socket from another origin. The ticket carries the caller's identity
    (:func:`grant_for_request`), so its connection expires and is revoked with it.
    """

    authentication_classes = [SecureJWTAuthentication, SessionAuthentication]
    permission_classes = [IsAuthenticated]
    # Tickets are credentials: their issuance is throttled per user (DRF scope "ws_ticket",
    # default 30/min, see secure_ws.api.throttling).
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "ws_ticket"

    def post(self, request: Request) -> Response:
        """Issue a ticket: 201 ``{"ticket", "expires_in"}``; 403 for a missing/foreign Origin."""
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
        try:
            ticket = issue_ticket_sync(grant_for_request(request), str(origin))
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
