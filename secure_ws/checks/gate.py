"""E020-W024: the gate's authentication surface and its explicit opt-outs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import Error, Tags, Warning, register

from secure_ws.checks.values import settings_valid
from secure_ws.conf import get_settings


@register(Tags.security)
def check_ambient_credentials(
    app_configs: Sequence[AppConfig] | None, **kwargs: Any
) -> list[Error]:
    """Report session or query-string auth with the origin check off (E020)."""
    if not settings_valid():
        return []
    ws = get_settings()
    if ws.CHECK_ORIGIN or not (ws.ALLOW_SESSION_AUTH or ws.ALLOW_QUERY_STRING_TOKEN):
        return []
    enabled = [
        name
        for name, on in (
            ("ALLOW_SESSION_AUTH", ws.ALLOW_SESSION_AUTH),
            ("ALLOW_QUERY_STRING_TOKEN", ws.ALLOW_QUERY_STRING_TOKEN),
        )
        if on
    ]
    return [
        Error(
            f"SECURE_WS {' and '.join(enabled)} on with CHECK_ORIGIN off: any site can open "
            "a WebSocket that a browser authenticates for it (cross-site WebSocket hijacking).",
            hint="Set SECURE_WS['CHECK_ORIGIN'] = True, or turn these credentials off.",
            id="secure_ws.E020",
        )
    ]


@register(Tags.security, deploy=True)
def check_weakened_gate(app_configs: Sequence[AppConfig] | None, **kwargs: Any) -> list[Warning]:
    """Report the explicit opt-outs of the gate (W021-W025)."""
    if not settings_valid():
        return []
    ws = get_settings()
    messages: list[Warning] = []
    if ws.ALLOW_QUERY_STRING_TOKEN:
        messages.append(
            Warning(
                "SECURE_WS['ALLOW_QUERY_STRING_TOKEN'] is on: tokens in URLs end up in proxy "
                "and server access logs and browser history.",
                hint="Use the 'bearer.<jwt>' subprotocol or a one-time ticket instead.",
                id="secure_ws.W021",
            )
        )
    if not ws.CHECK_ORIGIN:
        messages.append(
            Warning(
                "SECURE_WS['CHECK_ORIGIN'] is off: the Origin header is not checked.",
                hint="Turn it on unless no browser can reach this endpoint.",
                id="secure_ws.W022",
            )
        )
    if ws.REQUIRE_TLS is False and not settings.DEBUG:
        messages.append(
            Warning(
                "SECURE_WS['REQUIRE_TLS'] is False: handshakes over plain ws:// are accepted.",
                hint="Remove it (the default requires TLS unless DEBUG).",
                id="secure_ws.W023",
            )
        )
    if not ws.REQUIRE_AUTHENTICATION:
        messages.append(
            Warning(
                "SECURE_WS['REQUIRE_AUTHENTICATION'] is off: anonymous clients can connect.",
                hint="Turn it on unless the endpoint is meant to be public.",
                id="secure_ws.W024",
            )
        )
    if ws.TRUST_PROXY_ROOT_PATH:
        messages.append(
            Warning(
                "SECURE_WS['TRUST_PROXY_ROOT_PATH'] is on: a root path (Daphne-Root-Path) "
                "from a trusted proxy is believed, so a proxy that passes the client's "
                "header on lets clients change routing.",
                hint="Set SECURE_WS['ROOT_PATH'] (or FORCE_SCRIPT_NAME) to the one root path "
                "and remove TRUST_PROXY_ROOT_PATH.",
                id="secure_ws.W025",
            )
        )
    return messages
