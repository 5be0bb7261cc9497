"""Access-token validation with simplejwt's own rules, and the user from the user-state cache.

:func:`validate_access_token` is the one check every token goes through: the gate's
credentials step at the handshake, and the consumer's ``auth.refresh`` inside a connection;
:func:`validate_access_token_sync` runs the same checks for views (the ticket view and DRF's
:class:`secure_ws.api.authentication.SecureJWTAuthentication`), so HTTP and WebSocket refuse the
same tokens with the same reasons.
It decodes the token once with simplejwt (signature, algorithm list, audience, issuer,
leeway, ``exp``/``nbf``, ``token_type``, ``jti``), then requires an existing, active user
(``CHECK_USER_IS_ACTIVE``), an unchanged password fingerprint (``CHECK_REVOKE_TOKEN``) and,
for a token carrying a login-session id (``sid``), a session that was not revoked.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import import_module
from typing import Any

from channels.db import database_sync_to_async
from django.db import DatabaseError

from secure_ws.codes import Reason
from secure_ws.conf import get_settings, register_cache_clearer
from secure_ws.exceptions import BackendUnavailable, Refused
from secure_ws.gate.ticket_store import TicketGrant
from secure_ws.gate.userstate import get_user_state, load_user

#: Claim that carries the login-session id from the refresh token into its access tokens.
SESSION_ID_CLAIM = "sid"


@dataclass(frozen=True)
class ValidatedToken:
    """An access token that passed every check, and the user it belongs to."""

    user: Any
    exp: float
    jti: str | None
    session_id: str | None
    #: simplejwt's decoded token, for code that reads more claims (DRF's ``request.auth``).
    token: Any = field(default=None, compare=False, repr=False)


@lru_cache(maxsize=1)
def current_token_backend() -> Any:
    """Return a TokenBackend built from the *current* ``SIMPLE_JWT`` settings.

    simplejwt builds its backend once at import (simplejwt#58), so ``override_settings``
    never reaches it; this one is rebuilt whenever ``SIMPLE_JWT`` changes.
    """
    from rest_framework_simplejwt.backends import TokenBackend
    from rest_framework_simplejwt.settings import api_settings

    return TokenBackend(
        api_settings.ALGORITHM,
        api_settings.SIGNING_KEY,
        api_settings.VERIFYING_KEY,
        api_settings.AUDIENCE,
        api_settings.ISSUER,
        api_settings.JWK_URL,
        api_settings.LEEWAY,
        api_settings.JSON_ENCODER,
    )


register_cache_clearer(current_token_backend.cache_clear)


@lru_cache(maxsize=2)
def _current_token_class(name: str) -> Any:
    """simplejwt's token class ``name``, verified with the current settings' backend.

    simplejwt binds its class-level ``token_backend`` at import (simplejwt#58); this
    subclass reads :func:`current_token_backend` instead, so ``override_settings`` reaches
    it. The sliding token keeps its blacklist check.
    """
    from rest_framework_simplejwt import tokens

    base = getattr(tokens, name)

    class CurrentToken(base):  # type: ignore[valid-type,misc]
        @property
        def token_backend(self) -> Any:
            return current_token_backend()

        def get_token_backend(self) -> Any:
            return current_token_backend()

    CurrentToken.__name__ = CurrentToken.__qualname__ = f"Current{name}"
    return CurrentToken


def sliding_tokens_enabled() -> bool:
    """Return whether ``SIMPLE_JWT["AUTH_TOKEN_CLASSES"]`` accepts sliding tokens."""
    from rest_framework_simplejwt.settings import api_settings
    from rest_framework_simplejwt.tokens import SlidingToken

    return any(
        isinstance(cls, type) and issubclass(cls, SlidingToken)
        for cls in api_settings.AUTH_TOKEN_CLASSES
    )


def _decode(raw_token: str, *, sliding: bool = False) -> Any:
    """Decode ``raw_token`` as an access (or sliding) token, translating every failure.

    A sliding token checks the blacklist, which reads the database: decode those in a
    worker thread (:func:`_decode_any` does).
    """
    from rest_framework_simplejwt.exceptions import ExpiredTokenError, TokenError

    label = "sliding token" if sliding else "access token"
    try:
        return _current_token_class("SlidingToken" if sliding else "AccessToken")(raw_token)
    except ExpiredTokenError as exc:
        raise Refused(Reason.TOKEN_EXPIRED, f"{label} expired") from exc
    except TokenError as exc:
        raise Refused(Reason.CREDENTIALS_INVALID, f"{label} rejected by simplejwt") from exc
    except DatabaseError as exc:
        raise BackendUnavailable("token blacklist unavailable") from exc
    except Exception as exc:  # hostile input must never become a traceback
        raise Refused(
            Reason.CREDENTIALS_INVALID, f"malformed {label} ({type(exc).__name__})"
        ) from exc


_decode_async = database_sync_to_async(_decode)


async def _decode_any(raw_token: str) -> Any:
    """Decode an access token; a sliding token only where ``AUTH_TOKEN_CLASSES`` allows it."""
    try:
        return _decode(raw_token)
    except Refused as refusal:
        if refusal.reason is not Reason.CREDENTIALS_INVALID or not sliding_tokens_enabled():
            raise
    return await _decode_async(raw_token, sliding=True)


def _decode_any_sync(raw_token: str) -> Any:
    """Synchronous form of :func:`_decode_any` (views run in a worker thread already)."""
    try:
        return _decode(raw_token)
    except Refused as refusal:
        if refusal.reason is not Reason.CREDENTIALS_INVALID or not sliding_tokens_enabled():
            raise
    return _decode(raw_token, sliding=True)


def _session_revocation() -> Any:
    # Owned by the revocation module; looked up at call time so either side can land first.
    module = import_module("secure_ws.sessions.revocation")
    if not hasattr(module, "is_session_revoked"):
        raise BackendUnavailable("session revocation check is not installed")
    return module


async def session_revoked(session_id: str) -> bool:
    """Return whether login session ``session_id`` logged out.

    Raises:
        BackendUnavailable: when revocation cannot be read (fail closed).
    """
    revoked: bool = await _session_revocation().is_session_revoked(session_id)
    return revoked


async def check_session(session_id: str) -> None:
    """Refuse a credential of login session ``session_id`` once that session logged out.

    Raises:
        Refused: ``token_revoked``; ``BackendUnavailable`` when revocation cannot be read.
    """
    if await session_revoked(session_id):
        raise Refused(Reason.TOKEN_REVOKED, "login session revoked")


def check_session_sync(session_id: str) -> None:
    """Synchronous form of :func:`check_session`, for views."""
    if _session_revocation().is_session_revoked_sync(session_id):
        raise Refused(Reason.TOKEN_REVOKED, "login session revoked")


def password_fingerprint(password: str) -> str:
    """Return simplejwt's fingerprint of a password hash (``get_md5_hash_password``).

    It is what ``CHECK_REVOKE_TOKEN`` puts in every token: a fingerprint, not a password
    hash; a password change changes it, and every credential carrying the old one dies.
    """
    return hashlib.md5(password.encode(), usedforsecurity=False).hexdigest().upper()


def check_user(user: Any) -> Any:
    """Return ``user`` if it exists and may log in (simplejwt's ``CHECK_USER_IS_ACTIVE``).

    Raises:
        Refused: ``credentials_invalid`` (no such user) or ``user_inactive``.
    """
    from rest_framework_simplejwt.settings import api_settings

    if user is None:
        raise Refused(Reason.CREDENTIALS_INVALID, "unknown user")
    if api_settings.CHECK_USER_IS_ACTIVE and not user.is_active:
        raise Refused(Reason.USER_INACTIVE, "user is inactive")
    return user


async def active_user(user_id: str) -> Any:
    """Return the cached user ``user_id`` if it exists and may log in.

    Raises:
        Refused: ``credentials_invalid`` (no such user) or ``user_inactive``.
        BackendUnavailable: the user state cannot be read.
    """
    from rest_framework_simplejwt.settings import api_settings

    return check_user(await get_user_state(user_id, api_settings.USER_ID_FIELD))


def active_user_sync(user_id: str) -> Any:
    """Synchronous form of :func:`active_user`, read from the database (views)."""
    from rest_framework_simplejwt.settings import api_settings

    try:
        return check_user(load_user(api_settings.USER_ID_FIELD, user_id))
    except DatabaseError as exc:
        raise BackendUnavailable("user state: database unavailable") from exc


def check_grant(grant: TicketGrant, user: Any) -> None:
    """Refuse a spent ticket whose identity changed since it was issued.

    Raises:
        Refused: ``token_revoked`` (password changed), ``token_expired`` or
            ``session_expired`` (the issuing credential ended).
    """
    if grant.password_fingerprint is not None and not secrets.compare_digest(
        grant.password_fingerprint, password_fingerprint(user.password)
    ):
        raise Refused(Reason.TOKEN_REVOKED, "password changed since the ticket was issued")
    if grant.exp is not None and grant.exp <= time.time():
        raise Refused(grant.expiry_reason, "the ticket's credential expired")


@dataclass(frozen=True)
class Claims:
    """The claims every check needs, read from a decoded access token."""

    user_id: str
    exp: float
    jti: str | None
    session_id: str | None


def _check_raw(raw_token: object) -> str:
    if not isinstance(raw_token, str) or not raw_token:
        raise Refused(Reason.CREDENTIALS_INVALID, "empty access token")
    if len(raw_token.encode("utf-8", "replace")) > get_settings().MAX_CREDENTIAL_BYTES:
        raise Refused(Reason.CREDENTIALS_INVALID, "oversized access token")
    return raw_token


def _claims(token: Any) -> Claims:
    """Read the claims every check needs from a decoded token, refusing unusable ones."""
    from rest_framework_simplejwt.settings import api_settings

    user_id = token.get(api_settings.USER_ID_CLAIM)
    if not isinstance(user_id, str | int) or isinstance(user_id, bool) or user_id == "":
        raise Refused(Reason.CREDENTIALS_INVALID, "token has no usable user id")
    exp = token.get("exp")
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        raise Refused(Reason.CREDENTIALS_INVALID, "token has no usable exp")
    jti = token.get(api_settings.JTI_CLAIM) if api_settings.JTI_CLAIM else None
    session_id = token.get(SESSION_ID_CLAIM)
    if session_id is not None and (not isinstance(session_id, str) or len(session_id) > 128):
        raise Refused(Reason.CREDENTIALS_INVALID, "malformed sid claim")
    return Claims(str(user_id), float(exp), str(jti) if jti is not None else None, session_id)


def check_password_claim(token: Any, user: Any) -> None:
    """Refuse ``token`` (access or refresh) issued before ``user``'s last password change.

    Applies only with simplejwt's ``CHECK_REVOKE_TOKEN``, which puts the claim in tokens.

    Raises:
        Refused: ``token_revoked``.
    """
    from rest_framework_simplejwt.settings import api_settings

    if api_settings.CHECK_REVOKE_TOKEN:
        claim = token.get(api_settings.REVOKE_TOKEN_CLAIM)
        if claim != password_fingerprint(user.password):
            raise Refused(Reason.TOKEN_REVOKED, "password changed since the token was issued")


def _validated(token: Any, claims: Claims, user: Any) -> ValidatedToken:
    return ValidatedToken(
        user=user, exp=claims.exp, jti=claims.jti, session_id=claims.session_id, token=token
    )


@dataclass(frozen=True)
class DecodedToken:
    """An access token whose signature and claims passed, before any user or state check."""

    token: Any
    claims: Claims


async def decode_access_token(raw_token: str) -> DecodedToken:
    """Decode and check ``raw_token`` with simplejwt (CPU only, except a sliding token).

    Raises:
        Refused: ``token_expired`` or ``credentials_invalid``.
    """
    token = await _decode_any(_check_raw(raw_token))
    return DecodedToken(token, _claims(token))


def accept_user(decoded: DecodedToken, user: Any) -> ValidatedToken:
    """Return the validated token once ``user`` (from the user state) may use it.

    Raises:
        Refused: ``credentials_invalid``, ``user_inactive`` or ``token_revoked``.
    """
    check_password_claim(decoded.token, check_user(user))
    return _validated(decoded.token, decoded.claims, user)


async def validate_access_token(raw_token: str) -> ValidatedToken:
    """Validate ``raw_token`` as simplejwt would, with the user from the user-state cache.

    Raises:
        Refused: ``token_expired``, ``credentials_invalid``, ``token_revoked``,
            ``user_inactive``; ``BackendUnavailable`` when Redis or the database cannot
            tell (fail closed). The detail never contains the token.
    """
    token = await _decode_any(_check_raw(raw_token))
    claims = _claims(token)
    user = await active_user(claims.user_id)
    check_password_claim(token, user)
    if claims.session_id is not None:
        await check_session(claims.session_id)
    return _validated(token, claims, user)


def validate_access_token_sync(raw_token: str) -> ValidatedToken:
    """Synchronous form of :func:`validate_access_token`, for views (the same checks).

    The user is read from the database rather than the handshake's cache: a view already
    pays for a query, and sees a deactivation at once.
    """
    token = _decode_any_sync(_check_raw(raw_token))
    claims = _claims(token)
    user = active_user_sync(claims.user_id)
    check_password_claim(token, user)
    if claims.session_id is not None:
        check_session_sync(claims.session_id)
    return _validated(token, claims, user)
