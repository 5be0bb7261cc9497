"""E010/W011: every WebSocket route of ``ASGI_APPLICATION`` passes through the gate."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from channels.routing import ProtocolTypeRouter, URLRouter
from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.utils.module_loading import import_string

from secure_ws.gate.credentials import CredentialsMiddleware
from secure_ws.gate.origin import OriginMiddleware

_MAX_WALK_DEPTH = 64
#: Attributes through which ASGI middleware reaches its inner application.
_INNER_ATTRIBUTES = ("application", "inner", "app")


@dataclass(frozen=True)
class WebSocketRoute:
    """One WebSocket endpoint found in the ASGI application, and whether the gate guards it."""

    path: str
    origin_checked: bool
    authenticated: bool
    application: object

    @property
    def protected(self) -> bool:
        """Whether the connection meets an active origin step and a credentials step first."""
        return self.origin_checked and self.authenticated


def _pattern_text(route: Any) -> str:
    pattern = getattr(route, "pattern", None)
    for attribute in ("_route", "_regex"):
        text = getattr(pattern, attribute, None)
        if isinstance(text, str):
            return text.lstrip("^").rstrip("$")
    return str(pattern)


def walk_websocket_routes(application: object) -> list[WebSocketRoute]:
    """Return every WebSocket endpoint of an ASGI application with its protection.

    Follows ``ProtocolTypeRouter`` (its ``"websocket"`` entry), ``URLRouter`` routes
    (nested ones too) and middleware (anything with an ``application``, ``inner`` or
    ``app`` attribute, which covers Channels' and secure_ws' own). The gate is recognised
    by its steps: an endpoint counts as protected when the path to it passes an
    :class:`~secure_ws.gate.origin.OriginMiddleware` that is not switched off and a
    :class:`~secure_ws.gate.credentials.CredentialsMiddleware`, whether they were composed
    by ``secure_websocket()`` or by hand.
    """
    def walk(
        app: object, path: str, origin: bool, auth: bool, depth: int
    ) -> Iterator[WebSocketRoute]:
        if depth > _MAX_WALK_DEPTH:
            yield WebSocketRoute(path or "/", origin, auth, app)
            return
        if isinstance(app, ProtocolTypeRouter):
            inner = app.application_mapping.get("websocket")
            if inner is not None:
                yield from walk(inner, path, origin, auth, depth + 1)
            return
        if isinstance(app, URLRouter):
            for route in app.routes:
                yield from walk(
                    route.callback, path + _pattern_text(route), origin, auth, depth + 1
                )
            return
        if isinstance(app, OriginMiddleware):
            origin = origin or app.check_origin is not False
        if isinstance(app, CredentialsMiddleware):
            auth = True
        for attribute in _INNER_ATTRIBUTES:
            inner = getattr(app, attribute, None)
            if inner is not None and callable(inner):
                yield from walk(inner, path, origin, auth, depth + 1)
                return
        yield WebSocketRoute("/" + path.lstrip("/"), origin, auth, app)

    return list(walk(application, "", False, False, 0))


@register(Tags.security)
def check_websocket_routes(
    app_configs: Sequence[AppConfig] | None, **kwargs: Any
) -> list[CheckMessage]:
    """Report WebSocket routes that do not pass through the gate (E010)."""
    dotted = getattr(settings, "ASGI_APPLICATION", None)
    if not dotted:
        return []
    try:
        application = import_string(dotted)
    except Exception as exc:  # any import-time failure: report, never crash the check run
        return [
            Warning(
                f"ASGI_APPLICATION {dotted!r} could not be imported ({type(exc).__name__}); "
                "its WebSocket routes were not verified.",
                hint="Fix the import error, then run the checks again.",
                id="secure_ws.W011",
            )
        ]
    # An origin step that follows the global CHECK_ORIGIN counts: turning that off is an
    # opt-in reported by W022/E020, not an unwrapped route.
    unprotected = [route for route in walk_websocket_routes(application) if not route.protected]
    if not unprotected:
        return []
    paths = ", ".join(sorted({route.path for route in unprotected}))
    return [
        Error(
            f"WebSocket routes not protected by the secure_ws gate: {paths}",
            hint="Wrap the routes in secure_websocket(URLRouter([...])) in your ASGI "
            "application (or put OriginMiddleware and CredentialsMiddleware in front of them).",
            id="secure_ws.E010",
        )
    ]
