"""E001: every ``SECURE_WS`` value valid, no unknown key (the other checks skip when not)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import Error, Tags, register

from secure_ws.conf import validate


def settings_valid() -> bool:
    """Whether ``SECURE_WS`` validates (the other checks skip their work when it does not)."""
    return not validate(getattr(settings, "SECURE_WS", None))


@register(Tags.security)
def check_settings_values(app_configs: Sequence[AppConfig] | None, **kwargs: Any) -> list[Error]:
    """Report every invalid ``SECURE_WS`` value and unknown key (E001)."""
    return [
        Error(problem.message, hint=problem.hint, id="secure_ws.E001")
        for problem in validate(getattr(settings, "SECURE_WS", None))
    ]
