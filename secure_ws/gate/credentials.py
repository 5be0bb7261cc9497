"""Gate step 5: who is connecting, proved with simplejwt's own validation.

Sources, in the order they are looked for:

* ``bearer.<jwt>`` entry of ``Sec-WebSocket-Protocol`` (browsers): removed from
  ``scope["subprotocols"]`` and from the raw header in ``scope["headers"]`` before anything
  else happens, so nothing downstream can echo or log it;
* ``Authorization: Bearer <jwt>`` (non-browser clients; the only source accepted without
  an ``Origin`` header, because a browser page cannot set it on a WebSocket);
* ``?ticket=`` one-time ticket from ``POST /api/ws-ticket/``: the connection takes on the
  identity the ticket was issued for (user, ``sid``, expiry), re-checked when it is spent;
* ``?token=`` only if ``ALLOW_QUERY_STRING_TOKEN`` (tokens in URLs leak into logs);
* the Django session cookie only if ``ALLOW_SESSION_AUTH`` (cookies are ambient: CSWSH);
  the connection belongs to that session (hashed id, expiry), so its logout or expiry ends it.

More than one explicit credential is refused rather than guessed between. Tokens are
checked by :func:`secure_ws.gate.tokens.validate_access_token` (simplejwt's own rules; a
sliding token only where ``SIMPLE_JWT["AUTH_TOKEN_CLASSES"]`` lists ``SlidingToken``, never a
blacklisted one); the user comes from the user-state cache, so an accepted handshake costs
no database query. ``validate_access_token`` and ``ValidatedToken`` are re-exported here,
where the consumer's ``auth.refresh`` imports them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from importlib import import_module
from typing import Any
from urllib.parse import parse_qsl

from channels.db import database_sync_to_async
from django.conf import settings as django_settings
from django.contrib.auth.models import AnonymousUser
from django.db import DatabaseError

from secure_ws.codes import AuthMethod, Reason
from secure_ws.conf import get_settings
from secure_ws.connection import get_connection_info
from secure_ws.exceptions import BackendUnavailable, Refused
from secure_ws.gate.base import ASGIApp, GateStep, Scope
from secure_ws.gate.handshake import HEADERS_SCOPE_KEY, get_headers
from secure_ws.gate.origin import origin_is_missing
from secure_ws.gate.tokens import ValidatedToken, check_session, validate_access_token

#: Query parameters that would carry a JWT in the URL.
QUERY_TOKEN_PARAMS = frozenset({"token", "access_token", "jwt", "access"})

#: Query parameter of a one-time ticket.
TICKET_PARAM = "ticket"

__all__ = ["CredentialsMiddleware", "ValidatedToken", "take_credentials", "validate_access_token"]


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
    from secure_ws.codes import BEARER_SUBPROTOCOL_PREFIX

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
    from secure_ws.codes import BEARER_SUBPROTOCOL_PREFIX

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


async def _session_user(scope: Scope) -> Any:
    from channels.auth import get_user

    cookie = get_headers(scope).get("cookie")
    if not cookie:
        return None
    from django.http.cookie import parse_cookie

    session_key = parse_cookie(cookie).get(django_settings.SESSION_COOKIE_NAME)
    if not session_key:
        return None
    if len(session_key) > get_settings().MAX_CREDENTIAL_BYTES:
        raise Refused(Reason.CREDENTIALS_INVALID, "oversized session cookie")
    engine = import_module(django_settings.SESSION_ENGINE)
    scope["session"] = engine.SessionStore(session_key)
    try:
        user = await get_user(scope)
    except DatabaseError as exc:
        raise BackendUnavailable("session store unavailable") from exc
    if user is None or not user.is_authenticated:
        return None  # a stale or logged-out session proves nothing
    return user


def _django_session_identity(session: Any) -> tuple[str, float]:
    from secure_ws.sessions.django_session import session_credential_id, session_expiry

    return session_credential_id(session.session_key), session_expiry(session)


async def _bind_django_session(scope: Scope) -> None:
    """Give a session-authenticated connection its session's identity and expiry.

    It is then registered under the session for revocation (logout closes it 4403) and
    closes 4401 ``session_expired`` when the session expires, like a ticket a session asked
    for.

    Raises:
        Refused: ``session_expired`` or ``token_revoked`` (a session already logged out);
            ``BackendUnavailable`` when the session store cannot tell (fail closed).
    """
    info = get_connection_info(scope)
    try:
        session_id, expiry = await database_sync_to_async(_django_session_identity)(
            scope["session"]
        )
    except DatabaseError as exc:
        raise BackendUnavailable("session store unavailable") from exc
    if expiry <= time.time():
        raise Refused(Reason.SESSION_EXPIRED, "Django session expired")
    await check_session(session_id)
    info.session_id = session_id
    info.token_exp = expiry
    info.expiry_reason = Reason.SESSION_EXPIRED


class CredentialsMiddleware(GateStep):
    """Authenticate the handshake and put the user in ``scope["user"]``.

    Args:
        application: the inner ASGI application.
        require_authentication: refuse anonymous handshakes (None: settings).
        allow_session: accept the Django session cookie (None: ``ALLOW_SESSION_AUTH``).
        allow_query_token: accept ``?token=`` (None: ``ALLOW_QUERY_STRING_TOKEN``).
    """

    def __init__(
        self,
        application: ASGIApp,
        require_authentication: bool | None = None,
        allow_session: bool | None = None,
        allow_query_token: bool | None = None,
    ) -> None:
        super().__init__(application)
        self.require_authentication = require_authentication
        self.allow_session = allow_session
        self.allow_query_token = allow_query_token

    async def check(self, scope: Scope) -> None:
        try:
            await self._check(scope)
        finally:
            # The last step that reads headers in secure_websocket(): the consumer never
            # needs the parsed copy, so it does not stay in the scope for the connection's
            # life (a later step of a hand-built stack parses again on demand).
            scope.pop(HEADERS_SCOPE_KEY, None)

    async def _check(self, scope: Scope) -> None:
        settings = get_settings()
        info = get_connection_info(scope)
        allow_query = (
            settings.ALLOW_QUERY_STRING_TOKEN
            if self.allow_query_token is None
            else self.allow_query_token
        )
        allow_session = (
            settings.ALLOW_SESSION_AUTH if self.allow_session is None else self.allow_session
        )
        required = (
            settings.REQUIRE_AUTHENTICATION
            if self.require_authentication is None
            else self.require_authentication
        )
        found = take_credentials(scope, allow_query)
        missing_origin = origin_is_missing(scope)
        if found:
            credential = found[0]
            if missing_origin and credential.method is not AuthMethod.HEADER:
                raise Refused(Reason.ORIGIN_MISSING, f"{credential.method.value} without Origin")
            await self._authenticate(scope, credential)
            return
        user = await _session_user(scope) if allow_session else None
        if user is not None:
            if missing_origin:
                raise Refused(Reason.ORIGIN_MISSING, "session cookie without Origin")
            await _bind_django_session(scope)
            info.auth_method = AuthMethod.SESSION
            self._set_user(scope, user)
            return
        if required:
            raise Refused(Reason.CREDENTIALS_MISSING, "no credentials presented")
        scope["user"] = AnonymousUser()
        info.auth_method = AuthMethod.NONE

    async def _authenticate(self, scope: Scope, credential: PresentedCredential) -> None:
        info = get_connection_info(scope)
        if credential.method is AuthMethod.TICKET:
            from secure_ws.gate.tickets import consume_ticket, ticket_user

            grant = await consume_ticket(credential.secret, info.origin)
            if grant is None:
                raise Refused(Reason.TICKET_INVALID, "ticket unknown, spent, expired or foreign")
            user = await ticket_user(grant)
            info.auth_method = AuthMethod.TICKET
            # The connection is the issuing credential's: same expiry, same session.
            info.token_exp = grant.exp
            info.expiry_reason = grant.expiry_reason
            info.session_id = grant.session_id
            self._set_user(scope, user)
            return
        validated = await validate_access_token(credential.secret)
        info.auth_method = credential.method
        info.token_exp = validated.exp
        info.token_jti = validated.jti
        info.session_id = validated.session_id
        self._set_user(scope, validated.user)

    @staticmethod
    def _set_user(scope: Scope, user: Any) -> None:
        info = get_connection_info(scope)
        scope["user"] = user
        info.user_id = user.pk
        info.username = user.get_username()
