"""W050/W051: the message-size limit against the server's own limit."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.core.checks import Tags, Warning, register

from secure_ws.checks.values import settings_valid
from secure_ws.conf import get_settings


@register(Tags.security)
def check_message_size(app_configs: Sequence[AppConfig] | None, **kwargs: Any) -> list[Warning]:
    """Report ``MAX_MESSAGE_BYTES`` above the declared server limit (W050)."""
    if not settings_valid():
        return []
    ws = get_settings()
    server = ws.SERVER_MAX_MESSAGE_BYTES
    if server is None or ws.MAX_MESSAGE_BYTES <= server:
        return []
    return [
        Warning(
            f"SECURE_WS['MAX_MESSAGE_BYTES'] ({ws.MAX_MESSAGE_BYTES}) is above the server's "
            f"--websocket-max-message-size ({server}): the server cuts such messages with "
            "close 1009 before secure_ws can answer 'too_large'.",
            hint="Run daphne with --websocket-max-message-size at least MAX_MESSAGE_BYTES "
            "and declare it as SECURE_WS['SERVER_MAX_MESSAGE_BYTES'].",
            id="secure_ws.W050",
        )
    ]


@register(Tags.security, deploy=True)
def check_server_limits_declared(
    app_configs: Sequence[AppConfig] | None, **kwargs: Any
) -> list[Warning]:
    """Report an undeclared server message-size limit (W051)."""
    if not settings_valid() or get_settings().SERVER_MAX_MESSAGE_BYTES is not None:
        return []
    return [
        Warning(
            "SECURE_WS['SERVER_MAX_MESSAGE_BYTES'] is not set: daphne's default "
            "--websocket-max-message-size buffers up to 1 MiB per message before secure_ws "
            "sees it.",
            hint="Start daphne with --websocket-max-message-size (docs/deploy.md) and set "
            "SERVER_MAX_MESSAGE_BYTES to the same value.",
            id="secure_ws.W051",
        )
    ]
