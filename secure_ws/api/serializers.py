"""simplejwt serializers for the token endpoints: a login-session id (``sid``) in every
token pair, revoked at logout, and a refresh that refuses what the gate refuses.

Name them in ``SIMPLE_JWT`` (``TOKEN_OBTAIN_SERIALIZER``, ``TOKEN_BLACKLIST_SERIALIZER``,
``TOKEN_REFRESH_SERIALIZER``); revocation itself is :mod:`secure_ws.sessions.revocation`.
"""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

from rest_framework_simplejwt.serializers import (
    TokenBlacklistSerializer,
    TokenObtainPairSerializer,
    TokenRefreshSerializer,
)
from rest_framework_simplejwt.tokens import RefreshToken

from secure_ws.api.authentication import drf_refusal
from secure_ws.conf import get_settings
from secure_ws.exceptions import Refused
from secure_ws.gate.tokens import active_user_sync, check_password_claim, check_session_sync
from secure_ws.jwt_settings import jwt_settings
from secure_ws.sessions.revocation import SESSION_CLAIM, revoke_session

__all__ = [
    "SessionRefreshToken",
    "SessionTokenBlacklistSerializer",
    "SessionTokenObtainPairSerializer",
    "SessionTokenRefreshSerializer",
]


class SessionRefreshToken(RefreshToken):
    """A refresh token that carries a new login-session id in its ``sid`` claim.

    simplejwt copies refresh claims into the access tokens it mints (``access_token``), and
    rotation keeps them, so every access token of one login carries the same ``sid``.
    """

    @classmethod
    def for_user(cls, user: Any) -> SessionRefreshToken:
        """Return a refresh token for ``user`` with a fresh ``sid``."""
        token = super().for_user(user)
        token[SESSION_CLAIM] = uuid.uuid4().hex
        return token  # type: ignore[return-value]


class SessionTokenObtainPairSerializer(TokenObtainPairSerializer):
    """``TOKEN_OBTAIN_SERIALIZER`` that issues :class:`SessionRefreshToken` pairs."""

    token_class = SessionRefreshToken


class SessionTokenBlacklistSerializer(TokenBlacklistSerializer):
    """``TOKEN_BLACKLIST_SERIALIZER`` that also revokes the refresh token's login session."""

    def validate(self, attrs: dict[str, Any]) -> dict[Any, Any]:
        """Blacklist the refresh token, then revoke its ``sid`` (logout)."""
        refresh = self.token_class(attrs["refresh"])
        # simplejwt's own serializer tolerates a blacklist app that is not installed.
        with contextlib.suppress(AttributeError):
            refresh.blacklist()
        session_id = refresh.get(SESSION_CLAIM)
        if isinstance(session_id, str) and session_id and get_settings().REVOKE_ON_LOGOUT:
            revoke_session(session_id, refresh.get(jwt_settings().USER_ID_CLAIM))
        return {}


class SessionTokenRefreshSerializer(TokenRefreshSerializer):
    """``TOKEN_REFRESH_SERIALIZER`` that refuses what the gate refuses.

    simplejwt 5.5's ``TokenRefreshSerializer`` checks the signature, expiry, blacklist and
    ``is_active``, but not ``CHECK_REVOKE_TOKEN``: a refresh token from before a password
    change would keep minting access tokens. This one also refuses a refresh token whose
    password fingerprint is stale or whose login session (``sid``) was logged out, with the
    gate's reason codes, and an unknown user cleanly (simplejwt answers that with a 500).
    """

    def validate(self, attrs: dict[str, Any]) -> dict[Any, Any]:
        """Check the refresh token's user, password fingerprint and session, then refresh."""
        refresh = self.token_class(attrs["refresh"])
        user_id = refresh.get(jwt_settings().USER_ID_CLAIM)
        session_id = refresh.get(SESSION_CLAIM)
        try:
            user = active_user_sync(str(user_id))
            check_password_claim(refresh, user)
            if isinstance(session_id, str) and session_id:
                check_session_sync(session_id)
        except Refused as exc:
            raise drf_refusal(exc) from None
        return super().validate(attrs)
