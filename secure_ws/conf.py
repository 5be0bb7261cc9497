"""The ``SECURE_WS`` settings object: defaults, validation and reload.

Read settings at the point of use through :func:`get_settings`; never copy a value into a
module global or a class body, or ``override_settings`` stops reaching it (simplejwt#58).

Every default is the safe choice. Anything that weakens security is an explicit opt-in
that :mod:`secure_ws.checks` reports under ``manage.py check --deploy``.
"""

from __future__ import annotations

import difflib
import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import Any, Literal

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

#: The ``SECURE_WS`` keys and their defaults. The docs' settings reference is checked
#: against this dict by a test.
DEFAULTS: dict[str, Any] = {
    # Gate: client address and transport.
    "TRUSTED_PROXIES": [],
    "REQUIRE_TLS": None,  # None: required unless DEBUG.
    "VALIDATE_HOST": True,
    "ROOT_PATH": None,  # None: FORCE_SCRIPT_NAME, or "" when unset.
    "TRUST_PROXY_ROOT_PATH": False,  # believe a Daphne-Root-Path a trusted proxy sends
    # Gate: origin.
    "ALLOWED_ORIGINS": None,  # None: derived from CSRF_TRUSTED_ORIGINS and ALLOWED_HOSTS.
    "CHECK_ORIGIN": True,
    # Gate: handshake rate, per client IP.
    "HANDSHAKE_RATE": 60,  # handshakes per minute
    "HANDSHAKE_BURST": 20,
    # Gate: credentials.
    "REQUIRE_AUTHENTICATION": True,
    "ALLOW_SESSION_AUTH": False,
    "ALLOW_QUERY_STRING_TOKEN": False,
    "MAX_CREDENTIAL_BYTES": 4096,
    "TICKET_TTL": 30,  # seconds
    "USER_CACHE_TTL": 5.0,  # seconds a user's active/revoked state may be cached
    "MAX_TOKEN_LIFETIME": 900,  # seconds; longer ACCESS_TOKEN_LIFETIME is a check warning
    "MAX_CONNECTION_AGE": 86400,  # seconds a connection without a credential expiry may live
    # Gate: connection caps, across processes.
    "MAX_CONNECTIONS_PER_USER": 10,
    "MAX_CONNECTIONS_PER_IP": 50,
    "CONNECTION_SLOT_TTL": 60,  # seconds a crashed process's slot survives
    # Gate: how a refusal looks to the client.
    "REFUSAL_MODE": "reject",  # "reject": HTTP 403; "close": accept then close with a code
    "REFUSAL_LOG_LINES": 20,  # refusal log lines per reason per interval; the rest are counted
    "REFUSAL_LOG_INTERVAL": 10.0,  # seconds
    # Shared state.
    "REDIS_URL": None,  # None: in-process state (one process only)
    "KEY_PREFIX": "secure_ws",
    # Consumer: frames and messages.
    "MAX_MESSAGE_BYTES": 65536,
    # The --websocket-max-message-size the server (daphne) runs with; None: not declared,
    # which check --deploy reports. secure_ws cannot read the server's command line.
    "SERVER_MAX_MESSAGE_BYTES": None,
    "MAX_JSON_DEPTH": 16,
    "ALLOW_BINARY": False,
    "MESSAGE_RATE": 20.0,  # messages per second per connection
    "MESSAGE_BURST": 40,
    "BYTE_RATE": 262144,  # bytes per second per connection
    "RATE_LIMIT_CLOSE_AFTER": 20,  # rate-limited messages in a row before close 4429
    "VIOLATION_LIMIT": 10,
    "VIOLATION_WINDOW": 60,  # seconds
    "IDLE_TIMEOUT": None,  # seconds, None: no idle timeout
    "TOKEN_EXPIRY_WARNING": 60,  # seconds before exp that auth.expiring is sent
    "MAX_PENDING_OUTPUT": 1024 * 1024,  # bytes a client may leave unread before close 4429
    "PENDING_OUTPUT_TIMEOUT": 10.0,  # seconds a send may wait for a client that does not read
    # Revocation.
    "REVOKE_ON_LOGOUT": True,
    # File events.
    "FOLDER_POLICY": None,  # dotted path to a FolderPolicy class
    "SUBSCRIPTION_RECHECK_INTERVAL": 60.0,  # seconds a confirmed read access is trusted
    "MAX_FILE_SIZE": 5 * 1024**3,
    "ALLOWED_CONTENT_TYPES": [
        "application/json",
        "application/pdf",
        "application/octet-stream",
        "application/zip",
        "image/gif",
        "image/jpeg",
        "image/png",
        "image/webp",
        "text/csv",
        "text/plain",
    ],
    # Audit.
    "AUDIT_ENABLED": True,  # False: no audit trail (log, database); metrics keep running
    "AUDIT_SINKS": ["log", "metrics", "database"],
    "AUDIT_BUFFER_SIZE": 10000,
    "AUDIT_BATCH_SIZE": 500,
    "AUDIT_FLUSH_INTERVAL": 1.0,  # seconds
    "AUDIT_AGGREGATE_THRESHOLD": 20,  # refusals per (ip, reason, minute) written one by one
    "RETENTION_DAYS": 90,
    # Metrics.
    "METRICS_ENABLED": False,
    "METRICS_TOKEN": None,  # bearer token a scraper presents; None: staff users only
}

#: Keys whose value is a dotted import path, resolved lazily.
IMPORT_STRINGS = frozenset({"FOLDER_POLICY"})

_REFUSAL_MODES = ("reject", "close")

#: The audit sinks ``AUDIT_SINKS`` may name (:mod:`secure_ws.audit.sinks`).
AUDIT_SINK_NAMES = ("log", "metrics", "database")


@dataclass(frozen=True)
class SecureWSSettings:
    """The validated ``SECURE_WS`` settings. Build it with :func:`get_settings`."""

    TRUSTED_PROXIES: tuple[str, ...]
    REQUIRE_TLS: bool | None
    VALIDATE_HOST: bool
    ROOT_PATH: str | None
    TRUST_PROXY_ROOT_PATH: bool
    ALLOWED_ORIGINS: tuple[str, ...] | None
    CHECK_ORIGIN: bool
    HANDSHAKE_RATE: int
    HANDSHAKE_BURST: int
    REQUIRE_AUTHENTICATION: bool
    ALLOW_SESSION_AUTH: bool
    ALLOW_QUERY_STRING_TOKEN: bool
    MAX_CREDENTIAL_BYTES: int
    TICKET_TTL: int
    USER_CACHE_TTL: float
    MAX_TOKEN_LIFETIME: int
    MAX_CONNECTION_AGE: int
    MAX_CONNECTIONS_PER_USER: int
    MAX_CONNECTIONS_PER_IP: int
    CONNECTION_SLOT_TTL: int
    REFUSAL_MODE: Literal["reject", "close"]
    REFUSAL_LOG_LINES: int
    REFUSAL_LOG_INTERVAL: float
    REDIS_URL: str | None
    KEY_PREFIX: str
    MAX_MESSAGE_BYTES: int
    SERVER_MAX_MESSAGE_BYTES: int | None
    MAX_JSON_DEPTH: int
    ALLOW_BINARY: bool
    MESSAGE_RATE: float
    MESSAGE_BURST: int
    BYTE_RATE: int
    RATE_LIMIT_CLOSE_AFTER: int
    VIOLATION_LIMIT: int
    VIOLATION_WINDOW: int
    IDLE_TIMEOUT: float | None
    TOKEN_EXPIRY_WARNING: int
    MAX_PENDING_OUTPUT: int
    PENDING_OUTPUT_TIMEOUT: float
    REVOKE_ON_LOGOUT: bool
    FOLDER_POLICY: str | None
    SUBSCRIPTION_RECHECK_INTERVAL: float
    MAX_FILE_SIZE: int
    ALLOWED_CONTENT_TYPES: tuple[str, ...]
    AUDIT_ENABLED: bool
    AUDIT_SINKS: tuple[str, ...]
    AUDIT_BUFFER_SIZE: int
    AUDIT_BATCH_SIZE: int
    AUDIT_FLUSH_INTERVAL: float
    AUDIT_AGGREGATE_THRESHOLD: int
    RETENTION_DAYS: int
    METRICS_ENABLED: bool
    METRICS_TOKEN: str | None

    @property
    def tls_required(self) -> bool:
        """Whether a handshake must arrive over TLS (``REQUIRE_TLS``, or not ``DEBUG``)."""
        if self.REQUIRE_TLS is None:
            return not django_settings.DEBUG
        return self.REQUIRE_TLS


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return (_is_int(value) or isinstance(value, float)) and value == value  # NaN != NaN


def _is_str_list(value: object) -> bool:
    return isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)


def _is_sink_list(value: object) -> bool:
    if not isinstance(value, list | tuple) or not _is_str_list(value):
        return False
    distinct = len(set(value)) == len(value)
    return distinct and all(v in AUDIT_SINK_NAMES or _is_dotted_path(v) for v in value)


def _is_dotted_path(value: str) -> bool:
    parts = value.split(".")
    return len(parts) > 1 and all(part.isidentifier() for part in parts)


def _positive_int(value: object) -> bool:
    return _is_int(value) and value > 0  # type: ignore[operator]


def _non_negative_int(value: object) -> bool:
    return _is_int(value) and value >= 0  # type: ignore[operator]


def _positive_number(value: object) -> bool:
    return _is_number(value) and value > 0  # type: ignore[operator]


def _optional(check: Callable[[object], bool]) -> Callable[[object], bool]:
    return lambda value: value is None or check(value)


def _is_bool(value: object) -> bool:
    return isinstance(value, bool)


def _is_root_path(value: str) -> bool:
    return value.startswith("/") and not value.endswith("/") and value.isprintable()


def _is_cidr_list(value: object) -> bool:
    if not _is_str_list(value):
        return False
    try:
        for entry in value:  # type: ignore[attr-defined]
            ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return False
    return True


_VALIDATORS: dict[str, tuple[Callable[[object], bool], str]] = {
    "TRUSTED_PROXIES": (_is_cidr_list, "a list of IP networks in CIDR form"),
    "REQUIRE_TLS": (_optional(_is_bool), "True, False or None"),
    "VALIDATE_HOST": (_is_bool, "a bool"),
    "ROOT_PATH": (
        _optional(lambda v: isinstance(v, str) and (v == "" or _is_root_path(v))),
        'None, "" or a path like "/app" (leading slash, no trailing slash)',
    ),
    "TRUST_PROXY_ROOT_PATH": (_is_bool, "a bool"),
    "ALLOWED_ORIGINS": (_optional(_is_str_list), "a list of origins or None"),
    "CHECK_ORIGIN": (_is_bool, "a bool"),
    "HANDSHAKE_RATE": (_positive_int, "a positive int (handshakes per minute)"),
    "HANDSHAKE_BURST": (_positive_int, "a positive int"),
    "REQUIRE_AUTHENTICATION": (_is_bool, "a bool"),
    "ALLOW_SESSION_AUTH": (_is_bool, "a bool"),
    "ALLOW_QUERY_STRING_TOKEN": (_is_bool, "a bool"),
    "MAX_CREDENTIAL_BYTES": (_positive_int, "a positive int"),
    "TICKET_TTL": (_positive_int, "a positive int (seconds)"),
    "USER_CACHE_TTL": (lambda v: _is_number(v) and v >= 0, "a non-negative number of seconds"),  # type: ignore[operator]
    "MAX_TOKEN_LIFETIME": (_positive_int, "a positive int (seconds)"),
    "MAX_CONNECTION_AGE": (_positive_int, "a positive int (seconds)"),
    "MAX_CONNECTIONS_PER_USER": (_positive_int, "a positive int"),
    "MAX_CONNECTIONS_PER_IP": (_positive_int, "a positive int"),
    "CONNECTION_SLOT_TTL": (_positive_int, "a positive int (seconds)"),
    "REFUSAL_MODE": (lambda v: v in _REFUSAL_MODES, "'reject' or 'close'"),
    "REFUSAL_LOG_LINES": (_positive_int, "a positive int (log lines per reason per interval)"),
    "REFUSAL_LOG_INTERVAL": (_positive_number, "a positive number of seconds"),
    "REDIS_URL": (
        _optional(
            lambda v: isinstance(v, str) and v.startswith(("redis://", "rediss://", "unix://"))
        ),
        "None or a redis://, rediss:// or unix:// URL",
    ),
    "KEY_PREFIX": (lambda v: isinstance(v, str) and bool(v), "a non-empty str"),
    "MAX_MESSAGE_BYTES": (_positive_int, "a positive int (bytes)"),
    "SERVER_MAX_MESSAGE_BYTES": (_optional(_positive_int), "None or a positive int (bytes)"),
    "MAX_JSON_DEPTH": (_positive_int, "a positive int"),
    "ALLOW_BINARY": (_is_bool, "a bool"),
    "MESSAGE_RATE": (_positive_number, "a positive number (messages per second)"),
    "MESSAGE_BURST": (_positive_int, "a positive int"),
    "BYTE_RATE": (_positive_int, "a positive int (bytes per second)"),
    "RATE_LIMIT_CLOSE_AFTER": (_positive_int, "a positive int"),
    "VIOLATION_LIMIT": (_positive_int, "a positive int"),
    "VIOLATION_WINDOW": (_positive_int, "a positive int (seconds)"),
    "IDLE_TIMEOUT": (_optional(_positive_number), "None or a positive number of seconds"),
    "TOKEN_EXPIRY_WARNING": (_non_negative_int, "a non-negative int (seconds)"),
    "MAX_PENDING_OUTPUT": (_positive_int, "a positive int (bytes)"),
    "PENDING_OUTPUT_TIMEOUT": (_positive_number, "a positive number of seconds"),
    "REVOKE_ON_LOGOUT": (_is_bool, "a bool"),
    "FOLDER_POLICY": (
        _optional(lambda v: isinstance(v, str) and "." in v),
        "None or a dotted path",
    ),
    "SUBSCRIPTION_RECHECK_INTERVAL": (
        lambda v: _is_number(v) and 0 <= v < float("inf"),  # type: ignore[operator]
        "a non-negative number of seconds",
    ),
    "MAX_FILE_SIZE": (_positive_int, "a positive int (bytes)"),
    "ALLOWED_CONTENT_TYPES": (_is_str_list, "a list of MIME types"),
    "AUDIT_ENABLED": (_is_bool, "a bool"),
    "AUDIT_SINKS": (
        _is_sink_list,
        f"a list of distinct names from {list(AUDIT_SINK_NAMES)} or dotted paths to sink classes",
    ),
    "AUDIT_BUFFER_SIZE": (_positive_int, "a positive int"),
    "AUDIT_BATCH_SIZE": (_positive_int, "a positive int"),
    "AUDIT_FLUSH_INTERVAL": (_positive_number, "a positive number of seconds"),
    "AUDIT_AGGREGATE_THRESHOLD": (_positive_int, "a positive int"),
    "RETENTION_DAYS": (_positive_int, "a positive int (days)"),
    "METRICS_ENABLED": (_is_bool, "a bool"),
    "METRICS_TOKEN": (
        _optional(lambda v: isinstance(v, str) and len(v) >= 16),
        "a string of at least 16 characters or None",
    ),
}


@dataclass(frozen=True)
class SettingProblem:
    """One thing wrong with ``SECURE_WS``: what, and how to fix it."""

    key: str
    message: str
    hint: str


def validate(user_settings: object) -> list[SettingProblem]:
    """Return every problem with a ``SECURE_WS`` value; an empty list means it is valid."""
    if user_settings is None:
        return []
    if not isinstance(user_settings, Mapping):
        return [SettingProblem("SECURE_WS", "SECURE_WS must be a dict.", "Set SECURE_WS = {...}.")]
    problems: list[SettingProblem] = []
    for key, value in user_settings.items():
        if key not in DEFAULTS:
            close = difflib.get_close_matches(str(key).strip().upper(), DEFAULTS, n=1)
            hint = f"Did you mean {close[0]!r}?" if close else "Remove it; see docs/settings.md."
            problems.append(SettingProblem(str(key), f"Unknown SECURE_WS key {key!r}.", hint))
            continue
        check, expected = _VALIDATORS[key]
        if not check(value):
            problems.append(
                SettingProblem(
                    key,
                    f"SECURE_WS[{key!r}] must be {expected}; got {type(value).__name__}.",
                    f"Set SECURE_WS[{key!r}] to {expected}.",
                )
            )
    return problems


def _freeze(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(value)
    return value


def build_settings(user_settings: Mapping[str, Any] | None) -> SecureWSSettings:
    """Build the settings object from a user dict, raising on any invalid value."""
    problems = validate(user_settings)
    if problems:
        raise ImproperlyConfigured("; ".join(p.message for p in problems))
    merged = {**DEFAULTS, **(user_settings or {})}
    names = {f.name for f in fields(SecureWSSettings)}
    built = SecureWSSettings(**{k: _freeze(v) for k, v in merged.items() if k in names})
    custom = [name for name in built.AUDIT_SINKS if name not in AUDIT_SINK_NAMES]
    if custom:
        # Imported here, and only for a project's own sink: secure_ws.audit.sinks reads
        # this module's settings.
        from secure_ws.audit.sinks import load_sink_class

        for path in custom:
            load_sink_class(path)
    return built


@lru_cache(maxsize=1)
def get_settings() -> SecureWSSettings:
    """Return the current settings, built once and rebuilt after ``setting_changed``."""
    return build_settings(getattr(django_settings, "SECURE_WS", None))


#: Django settings whose change invalidates secure_ws caches.
WATCHED_SETTINGS = frozenset(
    {"SECURE_WS", "SIMPLE_JWT", "SECRET_KEY", "ALLOWED_HOSTS", "DEBUG", "CSRF_TRUSTED_ORIGINS"}
)

_cache_clearers: list[Callable[[], None]] = [get_settings.cache_clear]


def register_cache_clearer(clear: Callable[[], None]) -> None:
    """Register a callable that drops a cache derived from the watched settings."""
    _cache_clearers.append(clear)


def clear_caches() -> None:
    """Drop the settings object and every cache derived from it."""
    for clear in _cache_clearers:
        clear()


@receiver(setting_changed)
def _reload_settings(*, setting: str, **kwargs: object) -> None:
    if setting in WATCHED_SETTINGS:
        clear_caches()
