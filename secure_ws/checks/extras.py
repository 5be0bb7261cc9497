"""System checks for settings that need an optional extra, and for development-only modes.

The core install is Django, channels, channels-redis, DRF, simplejwt, pydantic and redis.
A setting that needs more says which extra installs it, instead of failing later with an
``ImportError`` deep in a request. Registered from :meth:`secure_ws.apps.SecureWSConfig.ready`.

IDs:
    secure_ws.E090  ``REFUSAL_MODE = "close"`` with ``DEBUG = False``
    secure_ws.E091  ``METRICS_ENABLED`` without prometheus-client (``[metrics]``)
    secure_ws.E092  a CSP setting on Django < 6 without django-csp (``[csp]``)
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings as django_settings
from django.core.checks import Error, Tags, register
from django.core.exceptions import ImproperlyConfigured

from secure_ws.conf import get_settings

#: The distribution name users install extras of.
DISTRIBUTION = "django-secure-ws"


def extra_hint(extra: str) -> str:
    """The install command for one extra, as every message that needs it words it."""
    return f"pip install '{DISTRIBUTION}[{extra}]'"


def is_installed(module: str) -> bool:
    """Whether ``module`` imports (an import, not a spec lookup: a broken install counts)."""
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def _settings_or_none() -> Any | None:
    try:
        return get_settings()
    except ImproperlyConfigured:
        return None  # check_settings_values (secure_ws.E001) reports it


@register(Tags.security)
def check_refusal_mode(app_configs: Sequence[AppConfig] | None, **kwargs: Any) -> list[Error]:
    """``REFUSAL_MODE = "close"`` tells every client why it was refused: development only."""
    settings = _settings_or_none()
    if settings is None or django_settings.DEBUG or settings.refusal_mode != "close":
        return []
    return [
        Error(
            'SECURE_WS["REFUSAL_MODE"] is "close" with DEBUG = False: every refused client '
            "learns which check refused it, and every refusal costs an accepted socket.",
            hint='Remove REFUSAL_MODE (None: "close" under DEBUG only) or set it to "reject".',
            id="secure_ws.E090",
        )
    ]


@register(Tags.security)
def check_metrics_extra(app_configs: Sequence[AppConfig] | None, **kwargs: Any) -> list[Error]:
    """``METRICS_ENABLED`` serves Prometheus metrics: it needs prometheus-client."""
    settings = _settings_or_none()
    if settings is None or not settings.METRICS_ENABLED or is_installed("prometheus_client"):
        return []
    return [
        Error(
            'SECURE_WS["METRICS_ENABLED"] is on, but prometheus-client is not installed: '
            "the /metrics view would serve nothing.",
            hint=f"{extra_hint('metrics')}, or turn METRICS_ENABLED off.",
            id="secure_ws.E091",
        )
    ]


def _uses_django_csp() -> bool:
    """Whether the settings configure django-csp (its setting or its middleware)."""
    middleware = getattr(django_settings, "MIDDLEWARE", ())
    return hasattr(django_settings, "CONTENT_SECURITY_POLICY") or any(
        str(entry).startswith("csp.") for entry in middleware
    )


@register(Tags.security)
def check_csp_extra(app_configs: Sequence[AppConfig] | None, **kwargs: Any) -> list[Error]:
    """django-csp settings without django-csp installed (Django < 6 has no built-in CSP)."""
    if not _uses_django_csp() or is_installed("csp"):
        return []
    return [
        Error(
            "The settings configure django-csp (CONTENT_SECURITY_POLICY or a csp.* "
            "middleware), but django-csp is not installed.",
            hint=f"{extra_hint('csp')} (Django 6 has a built-in CSP: SECURE_CSP).",
            id="secure_ws.E092",
        )
    ]
