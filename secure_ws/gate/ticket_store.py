"""How a one-time ticket is stored: its key, its record, and the in-process fallback.

Shared by :mod:`secure_ws.tickets` (issue, the view) and the admission script
(:mod:`secure_ws.gate.admission`), which spends a ticket inside the handshake's one Redis
call. A ticket is stored under the SHA-256 of its value, so whoever can read Redis still
cannot replay one; its record is JSON naming the identity it was issued for and the Origin
it is bound to (the script reads ``user_id``, ``session_id`` and ``origin``).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import asdict, dataclass
from typing import Any

from secure_ws.codes import Reason
from secure_ws.state import key

#: Longest ticket value accepted for lookup; anything longer is not one of ours.
MAX_TICKET_CHARS = 128

#: In-process tickets (no Redis: one process only): key -> (monotonic expiry, record).
local_tickets: dict[str, tuple[float, str]] = {}


@dataclass(frozen=True)
class TicketGrant:
    """The identity a ticket was issued for, handed to the connection that spends it.

    Attributes:
        user_id: the user's ``USER_ID_FIELD`` value, as a string.
        session_id: the issuing token's ``sid``, or the hashed id of the Django session
            that asked (:func:`secure_ws.django_session.session_credential_id`); ``None``
            when the credential had neither.
        exp: when the issuing credential expires (token ``exp`` or session expiry).
        expiry_reason: the close reason at ``exp``: ``token_expired`` or ``session_expired``.
        password_fingerprint: the user's password fingerprint at issue time, so a password
            change between issue and spend refuses the ticket.
    """

    user_id: str
    session_id: str | None = None
    exp: float | None = None
    expiry_reason: Reason = Reason.TOKEN_EXPIRED
    password_fingerprint: str | None = None


def ticket_key(ticket: str) -> str:
    """Return the Redis key of ``ticket`` (its SHA-256, never the value)."""
    return key("ticket", hashlib.sha256(ticket.encode()).hexdigest())


def usable_ticket(ticket: str) -> bool:
    """Return whether ``ticket`` is worth a lookup (not empty, not oversized)."""
    return bool(ticket) and len(ticket) <= MAX_TICKET_CHARS


def ticket_record(grant: TicketGrant, origin: str) -> str:
    """Return the stored record of a ticket for ``grant`` bound to ``origin``."""
    return json.dumps({**asdict(grant), "origin": origin})


def _optional_str(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError("not a string")
    return value


def parse_record(raw: Any) -> tuple[TicketGrant, str] | None:
    """Return the grant and the bound Origin of a stored record, or ``None`` if malformed."""
    try:
        record = json.loads(raw)
        grant = TicketGrant(
            user_id=str(record["user_id"]),
            session_id=_optional_str(record.get("session_id")),
            exp=float(record["exp"]) if record.get("exp") is not None else None,
            expiry_reason=Reason(record.get("expiry_reason", Reason.TOKEN_EXPIRED)),
            password_fingerprint=_optional_str(record.get("password_fingerprint")),
        )
        return grant, str(record["origin"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def parse_grant(raw: Any, origin: str | None) -> TicketGrant | None:
    """Return the grant of a spent ticket's record if it was bound to ``origin``."""
    if raw is None:
        return None
    parsed = parse_record(raw)
    if parsed is None:
        return None
    grant, bound_origin = parsed
    if origin is None or not secrets.compare_digest(bound_origin, origin):
        return None
    return grant


def store_local_ticket(ticket: str, record: str, ttl: int) -> None:
    """Keep ``ticket`` in-process for ``ttl`` seconds (no Redis)."""
    _prune_local()
    local_tickets[ticket_key(ticket)] = (time.monotonic() + ttl, record)


def take_local_ticket(stored_key: str) -> str | None:
    """Spend an in-process ticket: return its record if it was there and alive."""
    entry = local_tickets.pop(stored_key, None)
    return entry[1] if entry is not None and entry[0] > time.monotonic() else None


def _prune_local() -> None:
    now = time.monotonic()
    for stale in [k for k, (expires, _) in local_tickets.items() if expires <= now]:
        del local_tickets[stale]
