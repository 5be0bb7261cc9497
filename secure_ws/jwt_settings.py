"""simplejwt's settings, read at use time.

simplejwt rebinds ``rest_framework_simplejwt.settings.api_settings`` to a new object when
``SIMPLE_JWT`` changes (``override_settings`` in tests, a settings reload): a module-level
``from rest_framework_simplejwt.settings import api_settings`` keeps the old object and its
stale values. Read them through :func:`jwt_settings` instead.
"""

from __future__ import annotations

from typing import Any

from rest_framework_simplejwt import settings as simplejwt_settings

__all__ = ["jwt_settings"]


def jwt_settings() -> Any:
    """Return simplejwt's current settings object (``SIMPLE_JWT`` with its defaults)."""
    return simplejwt_settings.api_settings
