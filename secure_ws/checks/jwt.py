"""E040-W045: simplejwt's signing key, token lifetime, blacklist and revoke-on-password-change."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from django.apps import AppConfig, apps
from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.utils.module_loading import import_string

from secure_ws.checks.values import settings_valid
from secure_ws.conf import get_settings

#: Minimum HMAC key length: RFC 7518 section 3.2 requires a key as long as the hash output.
MIN_HMAC_KEY_BYTES = 32

_HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})


def _jwt_settings() -> Any | None:
    if not apps.is_installed("rest_framework_simplejwt"):
        return None
    # Imported here: simplejwt is optional, and its settings module needs the app installed.
    from rest_framework_simplejwt.settings import api_settings

    return api_settings


def _relation_to(key: bytes, secret: bytes) -> str | None:
    """How ``key`` overlaps ``secret`` (case-sensitive), or None when it does not."""
    if not key or not secret:
        return None
    if key == secret:
        return "is"
    if secret in key:
        return "contains"
    if key in secret:
        return "is part of"
    return None


@register(Tags.security, deploy=True)
def check_jwt_signing_key(app_configs: Sequence[AppConfig] | None, **kwargs: Any) -> list[Error]:
    """Report a short HMAC key (E040) or one derived from ``SECRET_KEY`` (E041), when not DEBUG.

    "Derived" means equal to, containing or contained in ``SECRET_KEY`` or one of its
    fallbacks: ``SECRET_KEY + "-jwt"`` is as forgeable as ``SECRET_KEY`` itself.
    """
    jwt = _jwt_settings()
    if jwt is None or settings.DEBUG or jwt.ALGORITHM not in _HMAC_ALGORITHMS:
        return []
    key = jwt.SIGNING_KEY
    key_bytes = key.encode() if isinstance(key, str) else bytes(key or b"")
    # Characters, not bytes: 16 two-byte characters are 32 bytes but far less entropy.
    length = len(key) if isinstance(key, str) else len(key_bytes)
    messages: list[Error] = []
    if length < MIN_HMAC_KEY_BYTES:
        messages.append(
            Error(
                f"SIMPLE_JWT['SIGNING_KEY'] is {length} characters; {jwt.ALGORITHM} needs "
                f"at least {MIN_HMAC_KEY_BYTES}, or tokens can be forged by brute force.",
                hint="Generate one with `openssl rand -base64 48` and load it from the "
                "environment.",
                id="secure_ws.E040",
            )
        )
    named = [("SECRET_KEY", settings.SECRET_KEY)] + [
        ("a SECRET_KEY_FALLBACKS entry", fallback)
        for fallback in getattr(settings, "SECRET_KEY_FALLBACKS", [])
    ]
    for name, secret in named:
        relation = _relation_to(key_bytes, str(secret).encode())
        if relation is not None:
            messages.append(
                Error(
                    f"SIMPLE_JWT['SIGNING_KEY'] {relation} {name}: whoever learns that key "
                    "can forge any user's tokens, and rotating one rotates the other.",
                    hint="Give SIMPLE_JWT its own random SIGNING_KEY (not derived from "
                    "SECRET_KEY), e.g. from `openssl rand -base64 48`, in the environment.",
                    id="secure_ws.E041",
                )
            )
            break
    return messages


@register(Tags.security)
def check_token_lifetime(app_configs: Sequence[AppConfig] | None, **kwargs: Any) -> list[Warning]:
    """Report an access-token lifetime above ``MAX_TOKEN_LIFETIME`` (W042)."""
    jwt = _jwt_settings()
    if jwt is None or not settings_valid():
        return []
    lifetime = jwt.ACCESS_TOKEN_LIFETIME
    limit = get_settings().MAX_TOKEN_LIFETIME
    if not isinstance(lifetime, timedelta) or lifetime.total_seconds() <= limit:
        return []
    return [
        Warning(
            f"SIMPLE_JWT['ACCESS_TOKEN_LIFETIME'] is {int(lifetime.total_seconds())} s, above "
            f"SECURE_WS['MAX_TOKEN_LIFETIME'] ({limit} s): a WebSocket opened with a token "
            "that is later revoked by expiry stays trusted that long.",
            hint="Shorten ACCESS_TOKEN_LIFETIME (clients renew with auth.refresh), or raise "
            "MAX_TOKEN_LIFETIME knowingly.",
            id="secure_ws.W042",
        )
    ]


@register(Tags.security)
def check_blacklist_installed(
    app_configs: Sequence[AppConfig] | None, **kwargs: Any
) -> list[Error]:
    """Report ``REVOKE_ON_LOGOUT`` without simplejwt's ``token_blacklist`` app (E043)."""
    if not settings_valid() or not get_settings().REVOKE_ON_LOGOUT:
        return []
    if apps.is_installed("rest_framework_simplejwt.token_blacklist"):
        return []
    return [
        Error(
            "SECURE_WS['REVOKE_ON_LOGOUT'] is on but rest_framework_simplejwt.token_blacklist "
            "is not installed: logging out revokes nothing.",
            hint="Add 'rest_framework_simplejwt.token_blacklist' to INSTALLED_APPS and "
            "migrate, or set REVOKE_ON_LOGOUT = False knowingly.",
            id="secure_ws.E043",
        )
    ]


@register(Tags.security, deploy=True)
def check_password_change_revokes_tokens(
    app_configs: Sequence[AppConfig] | None, **kwargs: Any
) -> list[Warning]:
    """Report tokens that survive a password change (W044, W045)."""
    jwt = _jwt_settings()
    if jwt is None:
        return []
    if not jwt.CHECK_REVOKE_TOKEN:
        return [
            Warning(
                "SIMPLE_JWT['CHECK_REVOKE_TOKEN'] is off: tokens issued before a password "
                "change keep opening WebSockets and calling the API until they expire.",
                hint="Set SIMPLE_JWT['CHECK_REVOKE_TOKEN'] = True (tokens then carry a "
                "password fingerprint that the gate, SecureJWTAuthentication and "
                "SessionTokenRefreshSerializer check).",
                id="secure_ws.W044",
            )
        ]
    # Imported here: it subclasses simplejwt's serializer, and simplejwt is optional (the
    # check returned above when it is not installed).
    from secure_ws.api.serializers import SessionTokenRefreshSerializer

    try:
        serializer = import_string(jwt.TOKEN_REFRESH_SERIALIZER)
    except ImportError:
        serializer = None
    if isinstance(serializer, type) and issubclass(serializer, SessionTokenRefreshSerializer):
        return []
    return [
        Warning(
            "SIMPLE_JWT['TOKEN_REFRESH_SERIALIZER'] does not check CHECK_REVOKE_TOKEN: a "
            "refresh token from before a password change keeps minting access tokens.",
            hint="Set SIMPLE_JWT['TOKEN_REFRESH_SERIALIZER'] = "
            "'secure_ws.api.serializers.SessionTokenRefreshSerializer' (or a subclass).",
            id="secure_ws.W045",
        )
    ]
