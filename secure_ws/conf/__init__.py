"""The ``SECURE_WS`` settings object: the settings table, validation and reload.

Read settings at the point of use through :func:`get_settings`; never copy a value into a
module global or a class body, or ``override_settings`` stops reaching it (simplejwt#58).

Every setting is declared once, as a field of :class:`SecureWSSettings`
(:mod:`secure_ws.conf.table`): its type, default, check, section and doc. ``DEFAULTS``,
:func:`validate` and ``docs/settings.md`` (``scripts/gen-settings-doc``) are derived from
that table. Every default is the safe choice; anything that weakens security is an explicit
opt-in that :mod:`secure_ws.checks` reports under ``manage.py check --deploy``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import fields
from functools import lru_cache
from typing import Any

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

from secure_ws.conf.rules import AUDIT_SINK_NAMES as AUDIT_SINK_NAMES
from secure_ws.conf.rules import SettingProblem, SettingSpec, find_problems, spec_of
from secure_ws.conf.table import SECTIONS as SECTIONS
from secure_ws.conf.table import SecureWSSettings as SecureWSSettings


def setting_specs() -> dict[str, SettingSpec]:
    """Every setting's row of the table, by name, in declaration order."""
    return {f.name: spec_of(f) for f in fields(SecureWSSettings) if f.metadata}


#: The ``SECURE_WS`` keys and their defaults, as a user would write them (lists, not tuples).
DEFAULTS: dict[str, Any] = {name: spec.default for name, spec in setting_specs().items()}


def validate(user_settings: object) -> list[SettingProblem]:
    """Return every problem with a ``SECURE_WS`` value; an empty list means it is valid."""
    problems = find_problems(setting_specs(), user_settings)
    if (
        isinstance(user_settings, Mapping)
        and user_settings.get("REDIS_URL") is not None
        and user_settings.get("REDIS_HOST") is not None
    ):
        message = "SECURE_WS sets both REDIS_URL and REDIS_HOST."
        problems.append(SettingProblem("REDIS_HOST", message, "Keep one: REDIS_HOST takes a URL."))
    return problems


def build_settings(user_settings: Mapping[str, Any] | None) -> SecureWSSettings:
    """Build the settings object from a user dict, raising on any invalid value."""
    problems = validate(user_settings)
    if problems:
        raise ImproperlyConfigured("; ".join(p.message for p in problems))
    given: dict[str, Any] = {
        key: tuple(value) if isinstance(value, list) else value
        for key, value in (user_settings or {}).items()
    }
    follows = not {"REDIS_URL", "REDIS_HOST"} & set(given)
    built = SecureWSSettings(**given, redis_follows_channel_layer=follows)
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
    | {"CHANNEL_LAYERS"}  # the shared state may follow the channel layer's Redis
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
