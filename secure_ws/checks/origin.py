"""E002-W004: the ``ALLOWED_ORIGINS`` entries (parsable, no ``*``, no ``http://``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register

from secure_ws.checks.values import settings_valid
from secure_ws.conf import get_settings
from secure_ws.origins import parse_origin


@register(Tags.security)
def check_origin_entries(app_configs: Sequence[AppConfig] | None, **kwargs: Any) -> list[Warning]:
    """Report ``ALLOWED_ORIGINS`` entries the gate ignores because it cannot parse them (W004)."""
    if not settings_valid():
        return []
    configured = get_settings().ALLOWED_ORIGINS or ()
    return [
        Warning(
            f"SECURE_WS['ALLOWED_ORIGINS'] entry {entry!r} is not a scheme://host[:port] "
            "origin; the gate ignores it.",
            hint="Write origins like 'https://app.example.com' or 'https://*.example.com' "
            "(no path, no trailing slash).",
            id="secure_ws.W004",
        )
        for entry in configured
        if entry.strip() != "*"
        and parse_origin(entry.strip().rstrip("/"), allow_wildcard=True) is None
    ]


@register(Tags.security, deploy=True)
def check_origin_policy(
    app_configs: Sequence[AppConfig] | None, **kwargs: Any
) -> list[CheckMessage]:
    """Report ``*`` (E002) and ``http://`` (W003) origins when not DEBUG."""
    if settings.DEBUG or not settings_valid():
        return []
    messages: list[CheckMessage] = []
    for entry in get_settings().ALLOWED_ORIGINS or ():
        value = entry.strip().lower()
        if value in {"*", "null"} or value.endswith("://*"):
            messages.append(
                Error(
                    f"SECURE_WS['ALLOWED_ORIGINS'] contains {entry!r}: any site could open "
                    "WebSockets with your users' credentials (CSWSH).",
                    hint="List the exact https:// origins of your pages.",
                    id="secure_ws.E002",
                )
            )
        elif value.startswith("http://"):
            messages.append(
                Warning(
                    f"SECURE_WS['ALLOWED_ORIGINS'] contains the plain-HTTP origin {entry!r}: "
                    "a network attacker can inject a page into it.",
                    hint="Serve the page over HTTPS and allow its https:// origin instead.",
                    id="secure_ws.W003",
                )
            )
    return messages
