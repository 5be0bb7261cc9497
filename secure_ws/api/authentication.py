"""DRF authentication that refuses exactly the tokens the WebSocket gate refuses.

simplejwt's ``JWTAuthentication`` knows nothing of secure_ws' login sessions: a token whose
session logged out still authenticates a view, and a view that hands out WebSocket tickets
would launder it into a live socket. :class:`SecureJWTAuthentication` runs the gate's own
checks (:func:`secure_ws.gate.tokens.validate_access_token_sync`: simplejwt's decoding,
an active user, ``CHECK_REVOKE_TOKEN``'s password fingerprint, a login session that was not
revoked) and answers with the gate's reason codes. Use it for every view of a project that
uses secure_ws (``REST_FRAMEWORK["DEFAULT_AUTHENTICATION_CLASSES"]``); the ticket view does.
"""

from __future__ import annotations

from typing import Any

from rest_framework import status
from rest_framework.exceptions import APIException, AuthenticationFailed
from rest_framework.request import Request
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.tokens import Token

from secure_ws.codes import Reason
from secure_ws.exceptions import BackendUnavailable, Refused
from secure_ws.gate.tokens import ValidatedToken, validate_access_token_sync

__all__ = ["SecureJWTAuthentication", "ServiceUnavailable", "drf_refusal"]


class ServiceUnavailable(APIException):
    """503: the state that decides whether a credential is valid could not be read."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "Try again later."
    default_code = Reason.BACKEND_UNAVAILABLE.value


def drf_refusal(exc: Refused) -> APIException:
    """Return the DRF exception answering ``exc``: its reason code, never its detail.

    ``BackendUnavailable`` becomes 503 (fail closed, retry later); any other refusal a 401
    ``{"detail", "code": <reason>}``, the code the gate would log for the same token.
    """
    if isinstance(exc, BackendUnavailable):
        return ServiceUnavailable()
    return AuthenticationFailed(
        {"detail": "Token not accepted.", "code": exc.reason.value}, code=exc.reason.value
    )


class SecureJWTAuthentication(JWTAuthentication):
    """``Authorization: Bearer <jwt>`` checked by the gate's rules, for DRF views.

    ``request.user`` is the token's user and ``request.auth`` simplejwt's decoded token, as
    with ``JWTAuthentication``.
    """

    def authenticate(self, request: Request) -> tuple[Any, Token] | None:
        """Return ``(user, token)``, ``None`` without a bearer header, or raise 401/503."""
        header = self.get_header(request)
        if header is None:
            return None
        raw_token = self.get_raw_token(header)
        if raw_token is None:
            return None
        validated = self.validate(raw_token)
        return validated.user, validated.token

    def validate(self, raw_token: bytes) -> ValidatedToken:
        """Validate ``raw_token`` as the gate would (override to add checks).

        Raises:
            AuthenticationFailed: with the gate's reason code.
            ServiceUnavailable: revocation or user state could not be read.
        """
        try:
            text = raw_token.decode("utf-8")
        except UnicodeDecodeError:
            raise drf_refusal(Refused(Reason.CREDENTIALS_INVALID)) from None
        try:
            return validate_access_token_sync(text)
        except Refused as exc:
            raise drf_refusal(exc) from None
