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

from channels.db import database_sync_to_async
from django.conf import settings as django_settings
from django.contrib.auth.models import AnonymousUser
from django.db import DatabaseError

from secure_ws.codes import AuthMethod, Reason
from secure_ws.conf import get_settings
from secure_ws.connection import ConnectionInfo, get_connection_info
from secure_ws.exceptions import BackendUnavailable, Refused
from secure_ws.gate.admission import (
    CAP_REASONS,
    AdmissionRequest,
    Admitted,
    admission_for,
    run_admission,
    settle_throttle,
    take_throttle,
)
from secure_ws.gate.base import ASGIApp, GateStep, Scope
from secure_ws.gate.caps import ConnectionCapMiddleware
from secure_ws.gate.handshake import HEADERS_SCOPE_KEY, get_headers
from secure_ws.gate.origin import origin_is_missing
from secure_ws.gate.sources import PresentedCredential, take_credentials
from secure_ws.gate.ticket_store import TicketGrant, parse_grant, ticket_key, usable_ticket
from secure_ws.gate.tokens import (
    ValidatedToken,
    check_grant,
    check_password_claim,
    check_session,
    check_user,
    decode_access_token,
    sliding_tokens_enabled,
    validate_access_token,
)
from secure_ws.gate.userstate import get_user_state

__all__ = [
    "CredentialsMiddleware",
    "PresentedCredential",
    "ValidatedCredential",
    "ValidatedToken",
    "take_credentials",
    "validate_access_token",
]


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


@dataclass
class ValidatedCredential:
    """What a checked credential proves, before the user is looked up.

    Attributes:
        method: where the credential came from.
        user_id: the user's ``USER_ID_FIELD`` value the credential names.
        exp: when the credential ends (token ``exp``, the ticket's issuing credential).
        expiry_reason: the close reason at ``exp``.
        jti: the token's id, if any.
        session_id: the login session (``sid``), if any.
        token: simplejwt's decoded token (``None`` for a ticket).
        grant: the spent ticket's grant (``None`` for a token).
        admitted: the admission call's answer (user generation, revocation, slot).
    """

    method: AuthMethod
    user_id: str
    exp: float | None
    expiry_reason: Reason = Reason.TOKEN_EXPIRED
    jti: str | None = None
    session_id: str | None = None
    token: Any = None
    grant: TicketGrant | None = None
    admitted: Admitted | None = None


class CredentialsMiddleware(GateStep):
    """Authenticate the handshake and put the user in ``scope["user"]``.

    Three hooks, in simplejwt's spirit, each overridable by a subclass (pass it to
    ``secure_websocket(inner, credentials_class=...)``):

    * :meth:`get_raw_credential` finds the credential in the scope;
    * :meth:`validate_credential` checks it and says which user it names;
    * :meth:`get_user` returns that user (or refuses).

    When the connection-cap step is this step's inner application, the caps are taken in
    the same Redis call as the user-state and revocation reads (and the deferred handshake
    token): one round trip for the whole handshake (:mod:`secure_ws.gate.admission`).

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
        self.caps = application if isinstance(application, ConnectionCapMiddleware) else None

    async def check(self, scope: Scope, info: ConnectionInfo) -> None:
        try:
            await self._check(scope, info)
        finally:
            # The last step that reads headers in secure_websocket(): the consumer never
            # needs the parsed copy, so it does not stay in the scope for the connection's
            # life (a later step of a hand-built stack parses again on demand).
            scope.pop(HEADERS_SCOPE_KEY, None)

    def get_raw_credential(self, scope: Scope) -> PresentedCredential | None:
        """Return the handshake's one explicit credential, or ``None`` (hook).

        The default reads, and strips, the ``bearer.`` subprotocol entry, the
        ``Authorization`` header, ``?ticket=`` and (if allowed) ``?token=``.

        Raises:
            Refused: a malformed or repeated credential, a refused query-string token.
        """
        allow_query = (
            get_settings().ALLOW_QUERY_STRING_TOKEN
            if self.allow_query_token is None
            else self.allow_query_token
        )
        found = take_credentials(scope, allow_query)
        return found[0] if found else None

    async def validate_credential(
        self, scope: Scope, credential: PresentedCredential
    ) -> ValidatedCredential:
        """Check ``credential`` and return the user id it names (hook).

        The default decodes a token with simplejwt's rules, or spends a ticket.

        Raises:
            Refused: ``token_expired``, ``credentials_invalid``, ``ticket_invalid``...
        """
        info = get_connection_info(scope)
        if credential.method is AuthMethod.TICKET:
            if not usable_ticket(credential.secret):
                raise Refused(Reason.TICKET_INVALID, "ticket unknown, spent, expired or foreign")
            admitted = await self._admit(scope, ticket_key=ticket_key(credential.secret))
            grant = parse_grant(admitted.ticket_record, info.origin)
            if admitted.verdict == "ticket_invalid" or grant is None:
                await admitted.release()
                raise Refused(Reason.TICKET_INVALID, "ticket unknown, spent, expired or foreign")
            return ValidatedCredential(
                AuthMethod.TICKET,
                grant.user_id,
                grant.exp,
                grant.expiry_reason,
                session_id=grant.session_id,
                grant=grant,
                admitted=admitted,
            )
        if sliding_tokens_enabled():
            await settle_throttle(scope)  # a sliding token's blacklist is a database read
        decoded = await decode_access_token(credential.secret)
        claims = decoded.claims
        return ValidatedCredential(
            credential.method,
            claims.user_id,
            claims.exp,
            jti=claims.jti,
            session_id=claims.session_id,
            token=decoded.token,
            admitted=await self._admit(scope, user_id=claims.user_id, session_id=claims.session_id),
        )

    async def get_user(self, scope: Scope, validated: ValidatedCredential) -> Any:
        """Return the user ``validated`` names, if it may connect (hook).

        The default reads the user-state cache (generation from the admission call) and
        applies simplejwt's checks: existing, active, unchanged password fingerprint, and
        for a ticket, its issuing credential not expired.

        Raises:
            Refused: ``credentials_invalid``, ``user_inactive``, ``token_revoked``,
                ``token_expired``/``session_expired``; ``BackendUnavailable``.
        """
        from rest_framework_simplejwt.settings import api_settings

        generation = validated.admitted.generation if validated.admitted else None
        user = check_user(
            await get_user_state(validated.user_id, api_settings.USER_ID_FIELD, generation)
        )
        if validated.token is not None:
            check_password_claim(validated.token, user)
        if validated.grant is not None:
            check_grant(validated.grant, user)
        return user

    async def _admit(
        self,
        scope: Scope,
        *,
        user_id: str | None = None,
        session_id: str | None = None,
        ticket_key: str | None = None,
    ) -> Admitted:
        """One call for the deferred handshake token, identity state and (if inner) caps."""
        info = get_connection_info(scope)
        request = AdmissionRequest(
            throttle=take_throttle(scope),
            ticket_key=ticket_key,
            origin=info.origin,
            user_id=user_id,
            session_id=session_id,
            caps=self.caps.cap_request(scope) if self.caps is not None else None,
        )
        return await run_admission(request)

    async def _check(self, scope: Scope, info: ConnectionInfo) -> None:
        settings = get_settings()
        allow_session = (
            settings.ALLOW_SESSION_AUTH if self.allow_session is None else self.allow_session
        )
        required = (
            settings.REQUIRE_AUTHENTICATION
            if self.require_authentication is None
            else self.require_authentication
        )
        credential = self.get_raw_credential(scope)
        missing_origin = origin_is_missing(scope)
        if credential is not None:
            if missing_origin and credential.method is not AuthMethod.HEADER:
                raise Refused(Reason.ORIGIN_MISSING, f"{credential.method.value} without Origin")
            await self._authenticate(scope, credential)
            return
        user = None
        if allow_session:
            # The session lookup reads the database: take the deferred token first. An
            # anonymous connection leaves it to the cap step's call (still one round trip).
            await settle_throttle(scope)
            user = await _session_user(scope)
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
        validated = await self.validate_credential(scope, credential)
        admitted = validated.admitted
        try:
            user = await self.get_user(scope, validated)
            if admitted is not None and admitted.verdict == "revoked":
                raise Refused(Reason.TOKEN_REVOKED, "login session revoked")
            if admitted is None and validated.session_id:
                await check_session(validated.session_id)
            info.auth_method = credential.method
            info.token_exp = validated.exp
            info.expiry_reason = validated.expiry_reason
            info.token_jti = validated.jti
            info.session_id = validated.session_id
            self._set_user(scope, user)
            # A cap refusal names the user (in the audit), as the separate cap step did.
            if admitted is not None and admitted.verdict in CAP_REASONS:
                raise Refused(CAP_REASONS[admitted.verdict], "connection cap reached")
        except BaseException:
            if admitted is not None:
                await admitted.release()
            raise
        if admitted is not None and admitted.slot is not None:
            admission_for(scope).slot = admitted.slot

    @staticmethod
    def _set_user(scope: Scope, user: Any) -> None:
        info = get_connection_info(scope)
        scope["user"] = user
        info.user_id = user.pk
        info.username = user.get_username()
