"""Where a handshake's credential is found: subprotocol, header, ticket or query string.

The credentials step's default :meth:`~secure_ws.gate.credentials.CredentialsMiddleware.
get_raw_credential` hook. A ``bearer.`` subprotocol entry is removed from the scope (parsed
list and raw header) as soon as it is read, so nothing downstream can echo or log it. More
than one explicit credential is refused rather than guessed between.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl

from secure_ws.codes import BEARER_SUBPROTOCOL_PREFIX, AuthMethod, Reason
from secure_ws.exceptions import Refused
from secure_ws.gate.base import Scope
from secure_ws.gate.handshake import HEADERS_SCOPE_KEY, get_headers

#: Query parameters that would carry a JWT in the URL.
QUERY_TOKEN_PARAMS = frozenset({"token", "access_token", "jwt", "access"})

#: Query parameter of a one-time ticket.
TICKET_PARAM = "ticket"


@dataclass
class PresentedCredential:
    """What the handshake offered: the source and the raw secret (never logged)."""

    method: AuthMethod
    secret: str


def _bearer_from_header(value: str) -> str:
    from rest_framework_simplejwt.settings import api_settings

    parts = value.split()
    if len(parts) != 2 or parts[0] not in api_settings.AUTH_HEADER_TYPES:
        raise Refused(Reason.CREDENTIALS_INVALID, "malformed Authorization header")
    return parts[1]


def _query_params(scope: Scope) -> list[tuple[str, str]]:
    raw = scope.get("query_string", b"")
    try:
        text = bytes(raw).decode("ascii")
        return parse_qsl(text, keep_blank_values=True, max_num_fields=32, strict_parsing=False)
    except (UnicodeDecodeError, ValueError, TypeError) as exc:
        raise Refused(Reason.BAD_HANDSHAKE, "malformed query string") from exc


def _without_bearer_entries(scope: Scope) -> None:
    """Rewrite ``scope["headers"]`` so no ``Sec-WebSocket-Protocol`` value carries a token.

    ``scope["subprotocols"]`` is only the server's parse of that header: the raw header is
    still in ``scope["headers"]``, where a downstream middleware, logger or error reporter
    would find the token. The list is copied, never mutated (another scope may share it);
    the entries it keeps are the server's own tuples, not copies (it lives as long as the
    connection).
    """
    prefix = BEARER_SUBPROTOCOL_PREFIX.encode()
    headers: list[tuple[bytes, bytes]] = []
    for entry in scope.get("headers") or ():
        name, value = entry
        if bytes(name).lower() == b"sec-websocket-protocol":
            kept = [p.strip() for p in bytes(value).split(b",")]
            kept = [p for p in kept if p and not p.startswith(prefix)]
            if not kept:
                continue
            entry = (name, b", ".join(kept))
        headers.append(entry)
    scope["headers"] = headers
    # The parsed copy of the old headers would still hold the token: parse again on demand.
    scope.pop(HEADERS_SCOPE_KEY, None)


def take_credentials(scope: Scope, allow_query_token: bool) -> list[PresentedCredential]:
    """Collect the explicit credentials of a handshake, removing any ``bearer.`` entry.

    Raises:
        Refused: for a malformed header, a query-string token when not allowed, or a
            repeated source.
    """
    found: list[PresentedCredential] = []
    subprotocols = list(scope.get("subprotocols") or ())
    bearer = [p for p in subprotocols if p.startswith(BEARER_SUBPROTOCOL_PREFIX)]
    if bearer:
        scope["subprotocols"] = [p for p in subprotocols if p not in bearer]
        _without_bearer_entries(scope)
        if len(bearer) > 1:
            raise Refused(Reason.CREDENTIALS_INVALID, "several bearer subprotocol entries")
        found.append(
            PresentedCredential(AuthMethod.SUBPROTOCOL, bearer[0][len(BEARER_SUBPROTOCOL_PREFIX) :])
        )
    headers = get_headers(scope)
    if headers.count("authorization") > 1:
        raise Refused(Reason.CREDENTIALS_INVALID, "duplicate Authorization header")
    authorization = headers.get("authorization")
    if authorization is not None:
        found.append(PresentedCredential(AuthMethod.HEADER, _bearer_from_header(authorization)))
    params = _query_params(scope)
    tickets = [value for name, value in params if name == TICKET_PARAM]
    tokens = [value for name, value in params if name in QUERY_TOKEN_PARAMS]
    if tokens and not allow_query_token:
        raise Refused(Reason.QUERY_TOKEN_REFUSED, "token in query string")
    if len(tickets) > 1 or len(tokens) > 1:
        raise Refused(Reason.CREDENTIALS_INVALID, "repeated query credential")
    if tickets:
        found.append(PresentedCredential(AuthMethod.TICKET, tickets[0]))
    if tokens:
        found.append(PresentedCredential(AuthMethod.QUERY, tokens[0]))
    if len(found) > 1:
        raise Refused(Reason.CREDENTIALS_INVALID, "more than one credential presented")
    return found
