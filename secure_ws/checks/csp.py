"""W060/W061: a Content-Security-Policy whose ``connect-src`` lists the WebSocket origins."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import Tags, Warning, register

from secure_ws.checks.values import settings_valid
from secure_ws.conf import get_settings
from secure_ws.headers import (
    BUILTIN_CSP_MIDDLEWARE,
    DJANGO_CSP_MIDDLEWARE,
    websocket_sources,
)


def _configured_csp() -> Mapping[str, Any] | None:
    """Return the enforced CSP directives, or ``None`` when no CSP header is sent."""
    middleware = list(getattr(settings, "MIDDLEWARE", []))
    if BUILTIN_CSP_MIDDLEWARE in middleware:
        builtin = getattr(settings, "SECURE_CSP", None)
        if isinstance(builtin, Mapping) and builtin:
            return builtin
    if DJANGO_CSP_MIDDLEWARE in middleware:
        config = getattr(settings, "CONTENT_SECURITY_POLICY", None)
        if isinstance(config, Mapping):
            directives = config.get("DIRECTIVES", {})
            # django-csp fills in default-src 'self' when it is not given.
            return {"default-src": ["'self'"], **directives}
    return None


def _covers(sources: Sequence[str], wanted: str) -> bool:
    scheme = wanted.split("://", 1)[0]
    return wanted in sources or f"{scheme}:" in sources


@register(Tags.security, deploy=True)
def check_content_security_policy(
    app_configs: Sequence[AppConfig] | None, **kwargs: Any
) -> list[Warning]:
    """Report a missing CSP (W060) or a ``connect-src`` without the WebSocket origins (W061)."""
    directives = _configured_csp()
    if directives is None:
        return [
            Warning(
                "No Content-Security-Policy is sent: an injected script can open a WebSocket "
                "to any host and carry your users' data away.",
                hint="Use secure_ws.headers.csp_settings() in settings.py and add "
                "secure_ws.headers.csp_middleware() to MIDDLEWARE (docs/quickstart.md).",
                id="secure_ws.W060",
            )
        ]
    if not settings_valid():
        return []
    raw = directives.get("connect-src") or directives.get("default-src") or []
    connect = [str(value) for value in raw] if isinstance(raw, list | tuple) else [str(raw)]
    wanted = websocket_sources(
        get_settings().ALLOWED_ORIGINS,
        allowed_hosts=settings.ALLOWED_HOSTS,
        csrf_trusted_origins=getattr(settings, "CSRF_TRUSTED_ORIGINS", []),
        tls_required=get_settings().tls_required,
    )
    missing = [source for source in wanted if not _covers(connect, source)]
    if not missing:
        return []
    return [
        Warning(
            f"The CSP connect-src does not list the WebSocket origins {', '.join(missing)}: "
            "Safari blocks the connection (its 'self' does not cover ws:/wss:).",
            hint="Build the policy with secure_ws.headers.csp_settings(SECURE_WS, ...), which "
            "lists them explicitly.",
            id="secure_ws.W061",
        )
    ]
