"""Content-Security-Policy built from ``SECURE_WS``, for django-csp 4 and Django 6.

A page that opens a WebSocket needs ``connect-src`` to name the socket's origin. CSP
Level 3 lets ``'self'`` cover ``ws:``/``wss:`` of the page's own host, but Safari does not
(WebKit bug 201591), so the WebSocket origins are always listed explicitly. They are
derived from the same allow-list the gate's origin step uses (``ALLOWED_ORIGINS``, or
``CSRF_TRUSTED_ORIGINS`` plus ``ALLOWED_HOSTS``), so a project states its origins once.

The rest of the policy is strict by default: scripts and styles only from ``'self'`` or
with the per-request nonce (never ``'unsafe-inline'``), no plugins, no framing
(``frame-ancestors 'none'``), forms and ``<base>`` only to the own origin.

These functions run inside ``settings.py``: they take plain values and never read
``django.conf.settings``. The system checks call :func:`websocket_sources` again at check
time to verify the policy a project actually deployed.

Django 5.2 uses django-csp 4.0 (``CONTENT_SECURITY_POLICY = {"DIRECTIVES": {...}}``,
``csp.middleware.CSPMiddleware``); Django 6 has CSP built in (``SECURE_CSP = {...}``,
``django.middleware.csp.ContentSecurityPolicyMiddleware``), and django-csp treats its 6.x
support as transitional, so :func:`csp_settings` picks the shape for the running Django.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import django
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest

from secure_ws.origins import Origin, parse_origin

#: The Django version from which the built-in ``SECURE_CSP`` is used instead of django-csp.
BUILTIN_CSP_VERSION = (6, 0)

#: django-csp's and Django's middleware, in the order of the shapes above.
DJANGO_CSP_MIDDLEWARE = "csp.middleware.CSPMiddleware"
BUILTIN_CSP_MIDDLEWARE = "django.middleware.csp.ContentSecurityPolicyMiddleware"

SELF = "'self'"
NONE = "'none'"

_WS_SCHEME = {"https": "wss", "http": "ws", "wss": "wss", "ws": "ws"}


class _Nonce:
    """Placeholder for the per-request nonce, swapped for each library's own sentinel."""

    def __repr__(self) -> str:
        return "NONCE"


#: Put this in a directive passed to :func:`build_directives` to ask for the nonce.
NONCE: Any = _Nonce()


def uses_builtin_csp(version: tuple[int, ...] | None = None) -> bool:
    """Return whether ``version`` (default: the running Django) has ``SECURE_CSP``."""
    return (version or django.VERSION[:2]) >= BUILTIN_CSP_VERSION


def _websocket_origin(origin: str) -> str | None:
    """Map ``https://host[:port]`` to ``wss://host[:port]`` (``http`` to ``ws``)."""
    parsed = parse_origin(origin.strip().rstrip("/"), allow_wildcard=True)
    if parsed is None or parsed.scheme not in _WS_SCHEME:
        return None
    return str(Origin(_WS_SCHEME[parsed.scheme], parsed.host, parsed.port))


def _host_sources(allowed_hosts: Iterable[str], *, tls_required: bool) -> list[str]:
    """Turn ``ALLOWED_HOSTS`` entries into ``wss://`` (and, without TLS, ``ws://``) sources.

    ``"*"`` is skipped: a policy that allows every host protects nothing, and the check
    that looks at ``connect-src`` then says the origins are not covered.
    """
    schemes = ("wss",) if tls_required else ("wss", "ws")
    sources: list[str] = []
    for raw in allowed_hosts:
        host = raw.strip().lower()
        if not host or host == "*":
            continue
        if host.startswith("."):
            host = "*" + host
        sources.extend(f"{scheme}://{host}" for scheme in schemes)
    return sources


def websocket_sources(
    allowed_origins: Sequence[str] | None,
    *,
    allowed_hosts: Iterable[str] = (),
    csrf_trusted_origins: Iterable[str] = (),
    tls_required: bool = True,
) -> list[str]:
    """Return the exact ``ws://``/``wss://`` sources the browser may connect to.

    Args:
        allowed_origins: ``SECURE_WS["ALLOWED_ORIGINS"]``; ``None`` means the gate's
            default (``CSRF_TRUSTED_ORIGINS`` plus the page's own host from
            ``ALLOWED_HOSTS``), mirrored here.
        allowed_hosts: Django's ``ALLOWED_HOSTS``, used only when ``allowed_origins`` is None.
        csrf_trusted_origins: Django's ``CSRF_TRUSTED_ORIGINS``, same.
        tls_required: whether the gate requires TLS; then plain ``ws://`` sources derived
            from host names are left out (explicit ``http://`` origins are still mapped,
            and the origin check reports them).

    Returns:
        Sources in allow-list order without duplicates; unparsable entries and ``*`` are
        dropped (the origin check reports them).
    """
    if allowed_origins is not None:
        candidates = [_websocket_origin(entry) for entry in allowed_origins]
    else:
        candidates = [_websocket_origin(entry) for entry in csrf_trusted_origins]
        candidates.extend(_host_sources(allowed_hosts, tls_required=tls_required))
    return list(dict.fromkeys(source for source in candidates if source))


def build_directives(
    connect_sources: Sequence[str],
    *,
    extra: Mapping[str, Sequence[Any]] | None = None,
) -> dict[str, list[Any]]:
    """Return the strict directive set, with :data:`NONCE` placeholders.

    Args:
        connect_sources: the WebSocket sources, from :func:`websocket_sources`.
        extra: directives to add or replace (e.g. ``{"img-src": [SELF, "data:"]}``).
            ``connect-src`` given here is extended, never replaced, so the WebSocket
            origins cannot be lost by accident.
    """
    directives: dict[str, list[Any]] = {
        "default-src": [SELF],
        "script-src": [SELF, NONCE],
        "style-src": [SELF, NONCE],
        "connect-src": [SELF, *connect_sources],
        "img-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
    for name, values in (extra or {}).items():
        if name == "connect-src":
            directives[name] = list(dict.fromkeys([*directives[name], *values]))
        else:
            directives[name] = list(values)
    return directives


def django_csp_config(
    secure_ws: Mapping[str, Any] | None,
    *,
    allowed_hosts: Iterable[str] = (),
    csrf_trusted_origins: Iterable[str] = (),
    debug: bool = False,
    extra: Mapping[str, Sequence[Any]] | None = None,
) -> dict[str, Any]:
    """Return django-csp 4.0's ``CONTENT_SECURITY_POLICY`` for a ``SECURE_WS`` dict.

    Raises:
        ImproperlyConfigured: django-csp (the ``[csp]`` extra) is not installed.
    """
    # Imported here: django-csp is only needed on Django 5.2 (6.x has SECURE_CSP).
    try:
        from csp.constants import NONCE as CSP_NONCE
    except ImportError as exc:  # optional: only Django < 6 needs it
        raise ImproperlyConfigured(
            "Django before 6.0 has no built-in CSP and django-csp is not installed: "
            "pip install 'django-secure-ws[csp]'"
        ) from exc

    directives = _directives(secure_ws, allowed_hosts, csrf_trusted_origins, debug, extra)
    return {"DIRECTIVES": _swap_nonce(directives, CSP_NONCE)}


def secure_csp(
    secure_ws: Mapping[str, Any] | None,
    *,
    allowed_hosts: Iterable[str] = (),
    csrf_trusted_origins: Iterable[str] = (),
    debug: bool = False,
    extra: Mapping[str, Sequence[Any]] | None = None,
) -> dict[str, Any]:
    """Return Django 6's ``SECURE_CSP`` for a ``SECURE_WS`` dict.

    Raises:
        ImportError: on a Django without built-in CSP (before 6.0).
    """
    # Imported here: django.utils.csp exists from Django 6.0 only.
    from django.utils.csp import CSP  # type: ignore[import-not-found,unused-ignore]

    directives = _directives(secure_ws, allowed_hosts, csrf_trusted_origins, debug, extra)
    return _swap_nonce(directives, CSP.NONCE)


def csp_settings(
    secure_ws: Mapping[str, Any] | None,
    *,
    allowed_hosts: Iterable[str] = (),
    csrf_trusted_origins: Iterable[str] = (),
    debug: bool = False,
    extra: Mapping[str, Sequence[Any]] | None = None,
) -> dict[str, Any]:
    """Return ``{setting name: value}`` for the running Django: django-csp's or Django's.

    Use it in ``settings.py`` as ``globals().update(csp_settings(SECURE_WS, ...))`` and add
    :func:`csp_middleware` to ``MIDDLEWARE`` (and ``"csp"`` to ``INSTALLED_APPS`` before
    Django 6).
    """
    kwargs: dict[str, Any] = {
        "allowed_hosts": allowed_hosts,
        "csrf_trusted_origins": csrf_trusted_origins,
        "debug": debug,
        "extra": extra,
    }
    if uses_builtin_csp():
        return {"SECURE_CSP": secure_csp(secure_ws, **kwargs)}
    return {"CONTENT_SECURITY_POLICY": django_csp_config(secure_ws, **kwargs)}


def csp_middleware() -> str:
    """Return the dotted path of the CSP middleware for the running Django."""
    return BUILTIN_CSP_MIDDLEWARE if uses_builtin_csp() else DJANGO_CSP_MIDDLEWARE


def csp_context_processor() -> str:
    """Return the context processor that provides ``{{ csp_nonce }}`` on the running Django.

    Django 6's own (its ``security.W027`` check asks for it by name), otherwise
    :func:`csp_nonce`.
    """
    if uses_builtin_csp():
        return "django.template.context_processors.csp"
    return "secure_ws.headers.csp_nonce"


def csp_nonce(request: HttpRequest) -> dict[str, Any]:
    """Template context processor: ``{{ csp_nonce }}`` on Django 5.2 and 6 alike.

    django-csp puts the nonce on ``request.csp_nonce`` (its own context processor calls
    it ``CSP_NONCE``); Django 6 keeps it on ``request._csp_nonce`` (its processor calls it
    ``csp_nonce``). Both are lazy: rendering ``{{ csp_nonce }}`` is what makes the
    middleware add the nonce to the header. ``None`` without a CSP middleware.
    """
    if uses_builtin_csp():
        return {"csp_nonce": getattr(request, "_csp_nonce", None)}
    return {"csp_nonce": getattr(request, "csp_nonce", None)}


def _directives(
    secure_ws: Mapping[str, Any] | None,
    allowed_hosts: Iterable[str],
    csrf_trusted_origins: Iterable[str],
    debug: bool,
    extra: Mapping[str, Sequence[Any]] | None,
) -> dict[str, list[Any]]:
    options = secure_ws or {}
    require_tls = options.get("REQUIRE_TLS")
    tls_required = (not debug) if require_tls is None else bool(require_tls)
    sources = websocket_sources(
        options.get("ALLOWED_ORIGINS"),
        allowed_hosts=allowed_hosts,
        csrf_trusted_origins=csrf_trusted_origins,
        tls_required=tls_required,
    )
    return build_directives(sources, extra=extra)


def _swap_nonce(directives: Mapping[str, list[Any]], sentinel: Any) -> dict[str, Any]:
    return {
        name: [sentinel if value is NONCE else value for value in values]
        for name, values in directives.items()
    }
