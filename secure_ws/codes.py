"""Close codes, refusal reasons and error codes: the one source of truth.

Docs, tests, the JS client and the probe import these rather than repeat literals.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum

#: The application subprotocol a client must offer and the server selects.
APP_SUBPROTOCOL = "secure-ws.v1"

#: Prefix of the subprotocol entry a browser uses to carry its access token.
BEARER_SUBPROTOCOL_PREFIX = "bearer."


class CloseCode(IntEnum):
    """WebSocket close codes used by secure_ws (see DESIGN.md, "Close codes")."""

    NORMAL = 1000
    GOING_AWAY = 1001
    UNSUPPORTED_DATA = 1003
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    TRY_AGAIN_LATER = 1013
    UNAUTHORIZED = 4401
    FORBIDDEN = 4403
    IDLE_TIMEOUT = 4408
    RATE_LIMITED = 4429


class Reason(StrEnum):
    """Machine-readable reason codes for refusals and closes.

    They are what a client sees as a close reason or an ``error`` code, what the audit log
    stores, and what the logs print. None of them ever carries client input or a secret.
    """

    # Gate: transport and addressing.
    TLS_REQUIRED = "tls_required"
    HOST_NOT_ALLOWED = "host_not_allowed"
    BAD_HANDSHAKE = "bad_handshake"
    UNKNOWN_ROUTE = "unknown_route"
    # Gate: origin.
    ORIGIN_MISSING = "origin_missing"
    ORIGIN_REFUSED = "origin_refused"
    # Gate: throttles and caps.
    HANDSHAKE_RATE_LIMITED = "handshake_rate_limited"
    USER_CONNECTION_LIMIT = "user_connection_limit"
    IP_CONNECTION_LIMIT = "ip_connection_limit"
    # Gate: credentials.
    CREDENTIALS_MISSING = "credentials_missing"
    CREDENTIALS_INVALID = "credentials_invalid"
    TOKEN_EXPIRED = "token_expired"
    TOKEN_REVOKED = "token_revoked"
    SESSION_EXPIRED = "session_expired"  # the Django session behind the connection expired
    USER_INACTIVE = "user_inactive"
    TICKET_INVALID = "ticket_invalid"
    QUERY_TOKEN_REFUSED = "query_token_refused"
    # Consumer.
    SUBPROTOCOL_REQUIRED = "subprotocol_required"
    NOT_AUTHENTICATED = "not_authenticated"
    REVOKED = "revoked"
    IDLE_TIMEOUT = "idle_timeout"
    CONNECTION_TOO_OLD = "connection_too_old"  # MAX_CONNECTION_AGE, no credential expiry
    TOO_MANY_VIOLATIONS = "too_many_violations"
    RATE_LIMITED = "rate_limited"
    BINARY_NOT_ALLOWED = "binary_not_allowed"
    TOO_LARGE = "too_large"
    SLOW_CONSUMER = "slow_consumer"  # unread output past MAX_PENDING_OUTPUT
    SERVER_ERROR = "server_error"
    SERVER_SHUTDOWN = "server_shutdown"
    FORBIDDEN = "forbidden"  # auth.refresh with another user's token
    # Shared state.
    BACKEND_UNAVAILABLE = "backend_unavailable"


class ErrorCode(StrEnum):
    """Codes carried by ``error`` frames (DESIGN.md, "Wire protocol")."""

    INVALID_JSON = "invalid_json"
    INVALID_MESSAGE = "invalid_message"
    UNKNOWN_TYPE = "unknown_type"
    FORBIDDEN = "forbidden"
    RATE_LIMITED = "rate_limited"
    TOO_LARGE = "too_large"
    SERVER_ERROR = "server_error"


class AuthMethod(StrEnum):
    """How a connection proved who it is."""

    SUBPROTOCOL = "subprotocol"
    HEADER = "header"
    TICKET = "ticket"
    SESSION = "session"
    QUERY = "query"
    NONE = "none"


class Outcome(StrEnum):
    """What happened to a connection attempt."""

    ACCEPTED = "accepted"
    REFUSED = "refused"


#: The close code each gate refusal maps to in accept-then-close mode.
REFUSAL_CLOSE_CODES: dict[Reason, CloseCode] = {
    Reason.TLS_REQUIRED: CloseCode.POLICY_VIOLATION,
    Reason.HOST_NOT_ALLOWED: CloseCode.FORBIDDEN,
    Reason.BAD_HANDSHAKE: CloseCode.POLICY_VIOLATION,
    Reason.UNKNOWN_ROUTE: CloseCode.POLICY_VIOLATION,
    Reason.ORIGIN_MISSING: CloseCode.FORBIDDEN,
    Reason.ORIGIN_REFUSED: CloseCode.FORBIDDEN,
    Reason.HANDSHAKE_RATE_LIMITED: CloseCode.RATE_LIMITED,
    Reason.USER_CONNECTION_LIMIT: CloseCode.RATE_LIMITED,
    Reason.IP_CONNECTION_LIMIT: CloseCode.RATE_LIMITED,
    Reason.CREDENTIALS_MISSING: CloseCode.UNAUTHORIZED,
    Reason.CREDENTIALS_INVALID: CloseCode.UNAUTHORIZED,
    Reason.TOKEN_EXPIRED: CloseCode.UNAUTHORIZED,
    Reason.TOKEN_REVOKED: CloseCode.FORBIDDEN,
    Reason.SESSION_EXPIRED: CloseCode.UNAUTHORIZED,
    Reason.USER_INACTIVE: CloseCode.FORBIDDEN,
    Reason.TICKET_INVALID: CloseCode.UNAUTHORIZED,
    Reason.QUERY_TOKEN_REFUSED: CloseCode.UNAUTHORIZED,
    Reason.SUBPROTOCOL_REQUIRED: CloseCode.POLICY_VIOLATION,
    Reason.NOT_AUTHENTICATED: CloseCode.UNAUTHORIZED,
    Reason.BACKEND_UNAVAILABLE: CloseCode.TRY_AGAIN_LATER,
    Reason.SERVER_ERROR: CloseCode.INTERNAL_ERROR,
}


def private_close_code(code: int) -> int:
    """Return the 4xxx stand-in for a standard code a server cannot send (1008 -> 4008).

    daphne closes through autobahn, which only sends 1000 and 3000-4999: asking it for
    1003, 1008, 1009, 1011 or 1013 raises. The consumer then closes with ``4000 + code %
    1000`` instead (the ``error`` frame sent before every close carries the reason either
    way); clients treat 4003/4008/4009/4011/4013 like their 1xxx counterparts.
    """
    if 1000 < code < 3000:
        return 4000 + code % 1000
    return code
