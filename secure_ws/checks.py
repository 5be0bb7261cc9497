"""System checks: WebSocket misconfiguration is a ``manage.py check`` message, not a breach.

The security review behind secure_ws asked to "verify WebSocket endpoint security"; these
checks do it at start-up and under ``check --deploy``. Each message has an id
(``secure_ws.E0xx`` errors, ``secure_ws.W0xx`` warnings) and a hint that says how to fix it.

=====  ======================================================================  ========
id     finds                                                                    deploy
=====  ======================================================================  ========
E001   an invalid ``SECURE_WS`` value or unknown key (with "did you mean")
E002   ``*`` in ``ALLOWED_ORIGINS`` when not DEBUG                              yes
W003   an ``http://`` origin in ``ALLOWED_ORIGINS`` when not DEBUG              yes
W004   an ``ALLOWED_ORIGINS`` entry the gate cannot parse (it is ignored)
E010   WebSocket routes of ``ASGI_APPLICATION`` not behind the origin and
       credentials steps (the unprotected paths are listed)
W011   ``ASGI_APPLICATION`` cannot be imported, so routes cannot be verified
E020   session or query-string auth enabled with ``CHECK_ORIGIN`` off (CSWSH)
W021   query-string tokens enabled (they end up in access logs)                 yes
W022   ``CHECK_ORIGIN`` off                                                     yes
W023   ``REQUIRE_TLS`` off when not DEBUG                                       yes
W024   ``REQUIRE_AUTHENTICATION`` off                                           yes
E030   in-memory or no channel layer when not DEBUG                             yes
W031   plain ``redis://`` to a host that is not loopback, when not DEBUG        yes
E040   simplejwt HMAC signing key shorter than 32 characters, when not DEBUG    yes
E041   simplejwt signing key equal to, inside or containing ``SECRET_KEY``      yes
       (or a ``SECRET_KEY_FALLBACKS`` entry), when not DEBUG
W042   ``ACCESS_TOKEN_LIFETIME`` longer than ``MAX_TOKEN_LIFETIME``
E043   ``REVOKE_ON_LOGOUT`` on without ``token_blacklist`` installed
W044   simplejwt ``CHECK_REVOKE_TOKEN`` off: a password change revokes no token    yes
W045   ``TOKEN_REFRESH_SERIALIZER`` ignores ``CHECK_REVOKE_TOKEN`` (old refresh     yes
       tokens keep minting access tokens after a password change)
W050   ``MAX_MESSAGE_BYTES`` above the server's ``SERVER_MAX_MESSAGE_BYTES``
W051   ``SERVER_MAX_MESSAGE_BYTES`` not declared                                yes
W060   no Content-Security-Policy (setting or middleware missing)               yes
W061   CSP ``connect-src`` does not list every WebSocket origin                 yes
=====  ======================================================================  ========
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from django.apps import AppConfig, apps
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.utils.module_loading import import_string

from secure_ws.conf import get_settings, validate
from secure_ws.headers import (
    BUILTIN_CSP_MIDDLEWARE,
    DJANGO_CSP_MIDDLEWARE,
    websocket_sources,
)

#: Minimum HMAC key length: RFC 7518 section 3.2 requires a key as long as the hash output.
MIN_HMAC_KEY_BYTES = 32

_HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
_IN_MEMORY_LAYER = "channels.layers.InMemoryChannelLayer"
_MAX_WALK_DEPTH = 64
#: Attributes through which ASGI middleware reaches its inner application.
_INNER_ATTRIBUTES = ("application", "inner", "app")


def _settings_valid() -> bool:
    return not validate(getattr(settings, "SECURE_WS", None))


# --- E001: SECURE_WS values ------------------------------------------------------------


@register(Tags.security)
def check_settings_values(app_configs: Sequence[AppConfig] | None, **kwargs: Any) -> list[Error]:
    """Report every invalid ``SECURE_WS`` value and unknown key (E001)."""
    return [
        Error(problem.message, hint=problem.hint, id="secure_ws.E001")
        for problem in validate(getattr(settings, "SECURE_WS", None))
    ]


# --- E002-W004: origins ---------------------------------------------------------------


@register(Tags.security)
def check_origin_entries(app_configs: Sequence[AppConfig] | None, **kwargs: Any) -> list[Warning]:
    """Report ``ALLOWED_ORIGINS`` entries the gate ignores because it cannot parse them (W004)."""
    from secure_ws.gate.origin import parse_origin

    if not _settings_valid():
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
    if settings.DEBUG or not _settings_valid():
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


# --- E010/W011: unprotected WebSocket routes ------------------------------------------


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
    from channels.routing import ProtocolTypeRouter, URLRouter

    from secure_ws.gate.credentials import CredentialsMiddleware
    from secure_ws.gate.origin import OriginMiddleware

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


# --- E020-W024: authentication surface ------------------------------------------------


@register(Tags.security)
def check_ambient_credentials(
    app_configs: Sequence[AppConfig] | None, **kwargs: Any
) -> list[Error]:
    """Report session or query-string auth with the origin check off (E020)."""
    if not _settings_valid():
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
    if not _settings_valid():
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


# --- E030/W031: channel layer and Redis -----------------------------------------------


def _redis_addresses(hosts: object) -> Iterator[str]:
    """Yield the URL-like address of each channels-redis ``hosts`` entry."""
    if not isinstance(hosts, list | tuple):
        return
    for host in hosts:
        if isinstance(host, str):
            yield host
        elif isinstance(host, Mapping) and isinstance(host.get("address"), str):
            yield host["address"]
        elif isinstance(host, list | tuple) and len(host) == 2:
            yield f"redis://{host[0]}:{host[1]}"


def _is_loopback(hostname: str) -> bool:
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def _plain_remote_redis(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme == "redis" and not _is_loopback(parts.hostname or "")


@register(Tags.security, deploy=True)
def check_channel_layer(
    app_configs: Sequence[AppConfig] | None, **kwargs: Any
) -> list[CheckMessage]:
    """Report an in-memory or missing channel layer (E030) and plain remote Redis (W031)."""
    if settings.DEBUG:
        return []
    messages: list[CheckMessage] = []
    layer = getattr(settings, "CHANNEL_LAYERS", {}).get("default")
    if layer is None or layer.get("BACKEND") == _IN_MEMORY_LAYER:
        messages.append(
            Error(
                "No channel layer or the in-memory one: revocation, kicks and file events "
                "do not reach connections held by other processes.",
                hint="Use channels_redis.core.RedisChannelLayer (or the pubsub layer) with "
                "CHANNEL_LAYERS['default'].",
                id="secure_ws.E030",
            )
        )
    urls = list(_redis_addresses((layer or {}).get("CONFIG", {}).get("hosts")))
    if _settings_valid() and get_settings().REDIS_URL:
        urls.append(str(get_settings().REDIS_URL))
    for url in urls:
        if _plain_remote_redis(url):
            host = urlsplit(url).hostname
            messages.append(
                Warning(
                    f"Redis at {host} is reached over plain redis://: tokens' revocation "
                    "state and channel messages cross the network unencrypted.",
                    hint="Use rediss:// with a password (see docs/deploy.md), or keep Redis "
                    "on loopback or a unix socket.",
                    id="secure_ws.W031",
                )
            )
    return messages


# --- E040-E043: simplejwt --------------------------------------------------------------


def _jwt_settings() -> Any | None:
    if not apps.is_installed("rest_framework_simplejwt"):
        return None
    from rest_framework_simplejwt.settings import api_settings

    return api_settings


def _relation_to(key: bytes, secret: bytes) -> str | None:
    """How ``key`` overlaps ``secret`` (case-sensitive), or None when it does not."""
    if not key or not secret:
        return None
    if key == secret:
        return "is"
    if secret in key:
        return "contains"
    if key in secret:
        return "is part of"
    return None


@register(Tags.security, deploy=True)
def check_jwt_signing_key(app_configs: Sequence[AppConfig] | None, **kwargs: Any) -> list[Error]:
    """Report a short HMAC key (E040) or one derived from ``SECRET_KEY`` (E041), when not DEBUG.

    "Derived" means equal to, containing or contained in ``SECRET_KEY`` or one of its
    fallbacks: ``SECRET_KEY + "-jwt"`` is as forgeable as ``SECRET_KEY`` itself.
    """
    jwt = _jwt_settings()
    if jwt is None or settings.DEBUG or jwt.ALGORITHM not in _HMAC_ALGORITHMS:
        return []
    key = jwt.SIGNING_KEY
    key_bytes = key.encode() if isinstance(key, str) else bytes(key or b"")
    # Characters, not bytes: 16 two-byte characters are 32 bytes but far less entropy.
    length = len(key) if isinstance(key, str) else len(key_bytes)
    messages: list[Error] = []
    if length < MIN_HMAC_KEY_BYTES:
        messages.append(
            Error(
                f"SIMPLE_JWT['SIGNING_KEY'] is {length} characters; {jwt.ALGORITHM} needs "
                f"at least {MIN_HMAC_KEY_BYTES}, or tokens can be forged by brute force.",
                hint="Generate one with `openssl rand -base64 48` and load it from the "
                "environment.",
                id="secure_ws.E040",
            )
        )
    named = [("SECRET_KEY", settings.SECRET_KEY)] + [
        ("a SECRET_KEY_FALLBACKS entry", fallback)
        for fallback in getattr(settings, "SECRET_KEY_FALLBACKS", [])
    ]
    for name, secret in named:
        relation = _relation_to(key_bytes, str(secret).encode())
        if relation is not None:
            messages.append(
                Error(
                    f"SIMPLE_JWT['SIGNING_KEY'] {relation} {name}: whoever learns that key "
                    "can forge any user's tokens, and rotating one rotates the other.",
                    hint="Give SIMPLE_JWT its own random SIGNING_KEY (not derived from "
                    "SECRET_KEY), e.g. from `openssl rand -base64 48`, in the environment.",
                    id="secure_ws.E041",
                )
            )
            break
    return messages


@register(Tags.security)
def check_token_lifetime(app_configs: Sequence[AppConfig] | None, **kwargs: Any) -> list[Warning]:
    """Report an access-token lifetime above ``MAX_TOKEN_LIFETIME`` (W042)."""
    jwt = _jwt_settings()
    if jwt is None or not _settings_valid():
        return []
    lifetime = jwt.ACCESS_TOKEN_LIFETIME
    limit = get_settings().MAX_TOKEN_LIFETIME
    if not isinstance(lifetime, timedelta) or lifetime.total_seconds() <= limit:
        return []
    return [
        Warning(
            f"SIMPLE_JWT['ACCESS_TOKEN_LIFETIME'] is {int(lifetime.total_seconds())} s, above "
            f"SECURE_WS['MAX_TOKEN_LIFETIME'] ({limit} s): a WebSocket opened with a token "
            "that is later revoked by expiry stays trusted that long.",
            hint="Shorten ACCESS_TOKEN_LIFETIME (clients renew with auth.refresh), or raise "
            "MAX_TOKEN_LIFETIME knowingly.",
            id="secure_ws.W042",
        )
    ]


@register(Tags.security)
def check_blacklist_installed(
    app_configs: Sequence[AppConfig] | None, **kwargs: Any
) -> list[Error]:
    """Report ``REVOKE_ON_LOGOUT`` without simplejwt's ``token_blacklist`` app (E043)."""
    if not _settings_valid() or not get_settings().REVOKE_ON_LOGOUT:
        return []
    if apps.is_installed("rest_framework_simplejwt.token_blacklist"):
        return []
    return [
        Error(
            "SECURE_WS['REVOKE_ON_LOGOUT'] is on but rest_framework_simplejwt.token_blacklist "
            "is not installed: logging out revokes nothing.",
            hint="Add 'rest_framework_simplejwt.token_blacklist' to INSTALLED_APPS and "
            "migrate, or set REVOKE_ON_LOGOUT = False knowingly.",
            id="secure_ws.E043",
        )
    ]


@register(Tags.security, deploy=True)
def check_password_change_revokes_tokens(
    app_configs: Sequence[AppConfig] | None, **kwargs: Any
) -> list[Warning]:
    """Report tokens that survive a password change (W044, W045)."""
    jwt = _jwt_settings()
    if jwt is None:
        return []
    if not jwt.CHECK_REVOKE_TOKEN:
        return [
            Warning(
                "SIMPLE_JWT['CHECK_REVOKE_TOKEN'] is off: tokens issued before a password "
                "change keep opening WebSockets and calling the API until they expire.",
                hint="Set SIMPLE_JWT['CHECK_REVOKE_TOKEN'] = True (tokens then carry a "
                "password fingerprint that the gate, SecureJWTAuthentication and "
                "SessionTokenRefreshSerializer check).",
                id="secure_ws.W044",
            )
        ]
    from secure_ws.sessions.revocation import SessionTokenRefreshSerializer

    try:
        serializer = import_string(jwt.TOKEN_REFRESH_SERIALIZER)
    except ImportError:
        serializer = None
    if isinstance(serializer, type) and issubclass(serializer, SessionTokenRefreshSerializer):
        return []
    return [
        Warning(
            "SIMPLE_JWT['TOKEN_REFRESH_SERIALIZER'] does not check CHECK_REVOKE_TOKEN: a "
            "refresh token from before a password change keeps minting access tokens.",
            hint="Set SIMPLE_JWT['TOKEN_REFRESH_SERIALIZER'] = "
            "'secure_ws.sessions.revocation.SessionTokenRefreshSerializer' (or a subclass).",
            id="secure_ws.W045",
        )
    ]


# --- W050/W051: message size against the server ---------------------------------------


@register(Tags.security)
def check_message_size(app_configs: Sequence[AppConfig] | None, **kwargs: Any) -> list[Warning]:
    """Report ``MAX_MESSAGE_BYTES`` above the declared server limit (W050)."""
    if not _settings_valid():
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
    if not _settings_valid() or get_settings().SERVER_MAX_MESSAGE_BYTES is not None:
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


# --- W060/W061: Content-Security-Policy -----------------------------------------------


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
    if not _settings_valid():
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
