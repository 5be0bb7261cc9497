"""Settings of the secure_ws demo project, read from the environment (see README)."""

from __future__ import annotations

import logging
import os
import re
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent

logger = logging.getLogger("project")


def env_bool(name: str, default: bool) -> bool:
    """Read a boolean environment variable (1/true/yes/on)."""
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: list[str]) -> list[str]:
    """Read a comma-separated environment variable."""
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def env_number(name: str, cast: type[int] | type[float]) -> int | float | None:
    """Read an optional numeric environment variable."""
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return None
    return cast(value)


def env_rate(name: str, default: str) -> str:
    """Read a DRF throttle rate ("10/min"), refusing a malformed one at start-up."""
    value = os.environ.get(name, "").strip() or default
    if not re.fullmatch(r"\d+/(s|sec|second|m|min|minute|h|hour|d|day)", value):
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(f"{name} must look like 10/min (N per s, min, hour or day).")
    return value


DEBUG = env_bool("DEBUG", False)
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured("Set SECRET_KEY (or DEBUG=1 for a throwaway key).")
    SECRET_KEY = "insecure-demo-key-for-debug-only-" + "x" * 32

# The JWT signing key is a secret of its own: one derived from SECRET_KEY lets whoever learns
# SECRET_KEY forge any user's tokens. DEBUG gets a random throwaway key (tokens die on restart).
_jwt_signing_key = os.environ.get("JWT_SIGNING_KEY", "")
if not _jwt_signing_key:
    if not DEBUG:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(
            "Set JWT_SIGNING_KEY to its own random key (not derived from SECRET_KEY), e.g. "
            'python -c "import secrets; print(secrets.token_urlsafe(50))"'
        )
    _jwt_signing_key = secrets.token_urlsafe(50)

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_simplejwt",
    "rest_framework_simplejwt.token_blacklist",
    "channels",
    "secure_ws",
    "secure_ws.contrib.files",
    "project.filebox",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "project.urls"
ASGI_APPLICATION = "project.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "project" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{BASE_DIR / 'demo.sqlite3'}"),
        conn_max_age=0,
    )
}

REDIS_URL = os.environ.get("REDIS_URL", "")
KEY_PREFIX = os.environ.get("SECURE_WS_KEY_PREFIX", "secure_ws")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # redis-py 8 defaults socket_timeout to 5 s, the same as channels-redis'
                # BZPOPMIN timeout: idle consumers then die with TimeoutError at random
                # (channels_redis#422, redis-py#4091). Keep the read timeout above it.
                # redis-py 8 pools raise past max_connections (default 100) instead of
                # waiting: leave room for bursts of group_add/group_send.
                "hosts": [{"address": REDIS_URL, "socket_timeout": 15, "max_connections": 1000}],
                "prefix": f"{KEY_PREFIX}:layer",
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    logger.warning(
        "REDIS_URL is not set: using the in-memory channel layer and in-process limits "
        "(one process only; not for production)."
    )

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", str(BASE_DIR / "media")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # The gate's token rules (revoked login sessions, password changes) for HTTP too.
        "secure_ws.api.authentication.SecureJWTAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
}

SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=5),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=1),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "SIGNING_KEY": _jwt_signing_key,
    "ALGORITHM": "HS256",
    # Login-session id ("sid") in refresh tokens, copied into their access tokens, so that
    # logging out (blacklisting the refresh token) closes that session's WebSockets.
    "TOKEN_OBTAIN_SERIALIZER": "secure_ws.api.serializers.SessionTokenObtainPairSerializer",
    "TOKEN_BLACKLIST_SERIALIZER": "secure_ws.api.serializers.SessionTokenBlacklistSerializer",
    # A password change revokes every token issued before it (fingerprint claim), and the
    # refresh view checks it too (simplejwt's own refresh serializer does not).
    "CHECK_REVOKE_TOKEN": True,
    "TOKEN_REFRESH_SERIALIZER": "secure_ws.api.serializers.SessionTokenRefreshSerializer",
}

_origins = env_list("SECURE_WS_ALLOWED_ORIGINS", [])
_require_tls = os.environ.get("SECURE_WS_REQUIRE_TLS", "")
_limits = {
    "HANDSHAKE_RATE": env_number("SECURE_WS_HANDSHAKE_RATE", int),
    "MESSAGE_RATE": env_number("SECURE_WS_MESSAGE_RATE", float),
    "MAX_CONNECTIONS_PER_USER": env_number("SECURE_WS_MAX_CONNECTIONS_PER_USER", int),
    "MAX_CONNECTIONS_PER_IP": env_number("SECURE_WS_MAX_CONNECTIONS_PER_IP", int),
    "IDLE_TIMEOUT": env_number("SECURE_WS_IDLE_TIMEOUT", float),
}
SECURE_WS: dict[str, object] = {
    "REDIS_URL": REDIS_URL or None,
    "KEY_PREFIX": KEY_PREFIX,
    "FOLDER_POLICY": "project.filebox.policy.MembershipFolderPolicy",
    **{key: value for key, value in _limits.items() if value is not None},
}
if _origins:
    SECURE_WS["ALLOWED_ORIGINS"] = _origins
if _require_tls:
    SECURE_WS["REQUIRE_TLS"] = env_bool("SECURE_WS_REQUIRE_TLS", True)
# The --websocket-max-message-size daphne runs with (deploy/, docs/deploy.md): secure_ws
# cannot read the server's command line, so the operator declares it for the checks.
SECURE_WS["SERVER_MAX_MESSAGE_BYTES"] = int(
    os.environ.get("SECURE_WS_SERVER_MAX_MESSAGE_BYTES", "131072")
)
# CIDRs of the TLS proxies whose X-Forwarded-For/-Proto the gate believes (comma-separated).
_trusted_proxies = env_list("SECURE_WS_TRUSTED_PROXIES", [])
if _trusted_proxies:
    SECURE_WS["TRUSTED_PROXIES"] = _trusted_proxies

# Brute-force limits on the credential endpoints (secure_ws.api.throttling, wired in urls.py):
# per client IP for login and refresh, per user for tickets; 429 with Retry-After.
REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] = {  # type: ignore[assignment]
    "token": env_rate("THROTTLE_TOKEN_RATE", "10/min"),
    "token_refresh": env_rate("THROTTLE_TOKEN_REFRESH_RATE", "30/min"),
    "ws_ticket": env_rate("THROTTLE_WS_TICKET_RATE", "30/min"),
}
# The throttles count in Django's cache: the same Redis when configured, so every process
# shares one count (a short timeout: an outage refuses logins quickly with a 503).
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": f"{KEY_PREFIX}:cache",
            "OPTIONS": {"socket_timeout": 5, "socket_connect_timeout": 2},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# Django's own security headers (the CSP comes from secure_ws.headers, issue 5).
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
if not DEBUG:
    SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", True)
    CSRF_COOKIE_SECURE = env_bool("SECURE_COOKIES", True)
    SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "31536000"))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    # Redirect plain HTTP to HTTPS unless the operator runs without TLS on purpose
    # (SECURE_WS_REQUIRE_TLS=0: loopback demo, tests, benchmarks).
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", env_bool("SECURE_WS_REQUIRE_TLS", True))

# Content-Security-Policy from SECURE_WS (issue 5): connect-src lists the exact ws/wss
# origins, scripts by nonce ({{ csp_nonce }}), frame-ancestors 'none'. django-csp 4 on
# Django 5.2, the built-in SECURE_CSP on Django 6.
from secure_ws.headers import (  # noqa: E402
    csp_context_processor,
    csp_middleware,
    csp_settings,
    uses_builtin_csp,
)

globals().update(
    csp_settings(
        SECURE_WS,
        allowed_hosts=ALLOWED_HOSTS,
        csrf_trusted_origins=CSRF_TRUSTED_ORIGINS,
        debug=DEBUG,
    )
)
if not uses_builtin_csp():
    INSTALLED_APPS.append("csp")
MIDDLEWARE.insert(
    MIDDLEWARE.index("django.middleware.security.SecurityMiddleware") + 1, csp_middleware()
)
TEMPLATES[0]["OPTIONS"]["context_processors"].append(csp_context_processor())  # type: ignore[index]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # No token, ticket or password in any log line, whoever writes it (docs/deploy.md):
    # the filter sits on the handler, so it sees the records of every logger below it.
    "filters": {"redact_secrets": {"()": "secure_ws.logging.RedactSecretsFilter"}},
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["redact_secrets"],
        }
    },
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "secure_ws": {"level": os.environ.get("SECURE_WS_LOG_LEVEL", "INFO")},
        "project": {"level": "INFO"},
        # Loggers with handlers of their own write through the redacting one instead:
        # uvicorn's (set up before Django; uvicorn.error logs each WebSocket request line
        # with its query string, uvicorn.asgi whole scopes at --log-level trace) and Django's
        # defaults. Listing uvicorn's children keeps the levels --log-level gave them.
        "uvicorn": {"handlers": ["console"], "propagate": False},
        "uvicorn.error": {},
        "uvicorn.asgi": {},
        "uvicorn.access": {"handlers": ["console"], "propagate": False},
        "django": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "django.server": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}
