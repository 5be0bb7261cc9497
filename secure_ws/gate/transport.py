"""Gate step 3: is this a well-formed handshake, over TLS, to this site, under this root?

Runs after the handshake throttle, so a flood of malformed handshakes is throttled like
any other. It requires TLS unless ``DEBUG`` or ``REQUIRE_TLS = False`` (ASVS 5.0: WSS
only) and closes the handshake holes that daphne and Channels leave open: ``Host`` is
checked against ``ALLOWED_HOSTS``, a ``Sec-WebSocket-Version`` other than 13 is refused,
duplicate ``Origin``/``Authorization``/``Host`` headers or non-UTF-8 header bytes are
refused cleanly, and so is a ``root_path`` other than the configured one.

``root_path`` changes routing, and daphne sets it from a ``Daphne-Root-Path`` request
header whoever sends it; a proxy that forwards client headers passes a client's one on. So
the rule holds for every peer, trusted proxy or not, unless ``TRUST_PROXY_ROOT_PATH``
says a trusted proxy's value is to be believed.
"""

from __future__ import annotations

from django.conf import settings as django_settings
from django.http.request import split_domain_port, validate_host

from secure_ws.codes import Reason
from secure_ws.conf import get_settings
from secure_ws.connection import ConnectionInfo
from secure_ws.exceptions import Refused
from secure_ws.gate.base import ASGIApp, GateStep, Scope
from secure_ws.gate.handshake import get_headers

#: Headers that must appear at most once: a second copy is a smuggling attempt.
SINGLE_HEADERS = ("host", "origin", "authorization", "sec-websocket-version")


def allowed_hosts() -> list[str]:
    """Return ``ALLOWED_HOSTS`` as Django applies it (localhost when DEBUG and empty)."""
    hosts = list(django_settings.ALLOWED_HOSTS)
    if django_settings.DEBUG and not hosts:
        hosts = [".localhost", "127.0.0.1", "[::1]"]
    return hosts


def host_is_allowed(host: str) -> bool:
    """Return whether a ``Host`` header value names one of ``ALLOWED_HOSTS``."""
    domain, _port = split_domain_port(host)
    return bool(domain) and validate_host(domain, allowed_hosts())


def expected_root_path() -> str:
    """Return the ``root_path`` this deployment serves under: ``ROOT_PATH`` or
    ``FORCE_SCRIPT_NAME``, else ``""``."""
    configured = get_settings().ROOT_PATH
    if configured is not None:
        return configured
    return getattr(django_settings, "FORCE_SCRIPT_NAME", None) or ""


class TransportMiddleware(GateStep):
    """Refuse handshakes that are malformed, not over TLS, for another host or root path.

    Args:
        application: the inner ASGI application.
        require_tls: refuse plain ``ws://`` (None: settings, i.e. unless DEBUG).
        validate_host: check ``Host`` against ``ALLOWED_HOSTS`` (None: settings).
        root_path: the only ``root_path`` accepted (None: settings ``ROOT_PATH``, then
            ``FORCE_SCRIPT_NAME``, then ``""``).
        trust_proxy_root_path: accept any ``root_path`` from a trusted proxy (None:
            settings ``TRUST_PROXY_ROOT_PATH``).
    """

    def __init__(
        self,
        application: ASGIApp,
        require_tls: bool | None = None,
        validate_host: bool | None = None,
        root_path: str | None = None,
        trust_proxy_root_path: bool | None = None,
    ) -> None:
        super().__init__(application)
        self.require_tls = require_tls
        self.validate_host = validate_host
        self.root_path = root_path
        self.trust_proxy_root_path = trust_proxy_root_path

    async def check(self, scope: Scope, info: ConnectionInfo) -> None:
        settings = get_settings()
        headers = get_headers(scope)
        for name in SINGLE_HEADERS:
            if headers.count(name) > 1:
                raise Refused(Reason.BAD_HANDSHAKE, f"duplicate {name} header")

        expected_root = expected_root_path() if self.root_path is None else self.root_path
        trust_proxy = (
            settings.TRUST_PROXY_ROOT_PATH
            if self.trust_proxy_root_path is None
            else self.trust_proxy_root_path
        )
        if scope.get("root_path", "") != expected_root and not (
            trust_proxy and info.via_trusted_proxy
        ):
            raise Refused(Reason.BAD_HANDSHAKE, "root path differs from the configured one")

        version = headers.get("sec-websocket-version")
        if version is not None and version.strip() != "13":
            raise Refused(Reason.BAD_HANDSHAKE, "unsupported Sec-WebSocket-Version")

        require_tls = settings.tls_required if self.require_tls is None else self.require_tls
        if require_tls and info.scheme != "wss":
            raise Refused(Reason.TLS_REQUIRED, "handshake did not arrive over TLS")

        check_host = settings.VALIDATE_HOST if self.validate_host is None else self.validate_host
        if check_host and not host_is_allowed(headers.get("host") or ""):
            raise Refused(Reason.HOST_NOT_ALLOWED, "Host not in ALLOWED_HOSTS")
