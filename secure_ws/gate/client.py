"""Gate step 1: who is connecting, over what, to which host.

Finds the real client address and scheme (``X-Forwarded-For`` / ``X-Forwarded-Proto`` are
believed only when the socket peer is a trusted proxy; the right-most untrusted hop wins,
so a client cannot prepend a fake address), requires TLS unless ``DEBUG`` or
``REQUIRE_TLS = False`` (ASVS 5.0: WSS only), and closes the handshake holes that daphne and
Channels leave open: ``Host`` is checked against ``ALLOWED_HOSTS``, a
``Sec-WebSocket-Version`` other than 13 is refused, a client-sent ``Daphne-Root-Path`` (which
daphne turns into ``root_path`` and which changes routing) is refused unless a trusted proxy
sent it, and duplicate ``Origin``/``Authorization``/``Host`` headers or non-UTF-8 header
bytes are refused cleanly.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from functools import lru_cache

from django.conf import settings as django_settings
from django.http.request import split_domain_port, validate_host

from secure_ws.codes import Reason
from secure_ws.conf import get_settings, register_cache_clearer
from secure_ws.connection import MAX_USER_AGENT_CHARS, get_connection_info
from secure_ws.exceptions import Refused
from secure_ws.gate.base import ASGIApp, GateStep, Scope
from secure_ws.gate.handshake import get_headers
from secure_ws.gate.server_proxy import warn_if_server_rewrites_proxy_headers

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Headers that must appear at most once: a second copy is a smuggling attempt.
SINGLE_HEADERS = ("host", "origin", "authorization", "sec-websocket-version")

_TLS_SCHEMES = {"https": "wss", "wss": "wss", "http": "ws", "ws": "ws"}


@lru_cache(maxsize=8)
def _networks(entries: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


register_cache_clearer(_networks.cache_clear)


def _parse_ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    value = value.strip()
    if value.startswith("[") and "]" in value:
        value = value[1 : value.index("]")]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _is_trusted(address: object, networks: Sequence[IPNetwork]) -> bool:
    return isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address) and any(
        address in network for network in networks
    )


def resolve_client(
    peer: str | None,
    forwarded_for: str | None,
    forwarded_proto: str | None,
    scheme: str,
    trusted: Sequence[IPNetwork],
) -> tuple[str, str, bool]:
    """Return ``(client_ip, scheme, via_trusted_proxy)`` for one handshake.

    Forwarding headers count only when ``peer`` is inside ``trusted``. Walking
    ``X-Forwarded-For`` from the right, trusted hops are skipped and the first untrusted one
    is the client: entries to its left were written by the client and prove nothing.

    Raises:
        Refused: ``bad_handshake`` when a trusted proxy forwarded an unparsable address.
    """
    peer_address = _parse_ip(peer) if peer else None
    if not _is_trusted(peer_address, trusted):
        return (str(peer_address) if peer_address else (peer or "")), scheme, False
    client = str(peer_address)
    if forwarded_for:
        for hop in reversed(forwarded_for.split(",")):
            address = _parse_ip(hop)
            if address is None:
                raise Refused(Reason.BAD_HANDSHAKE, "unparsable X-Forwarded-For hop")
            client = str(address)
            if not _is_trusted(address, trusted):
                break
    if forwarded_proto:
        proto = forwarded_proto.split(",")[-1].strip().lower()
        scheme = _TLS_SCHEMES.get(proto, "ws")
    return client, scheme, True


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


class ClientAddressMiddleware(GateStep):
    """Resolve the real client and refuse handshakes that are malformed or not over TLS.

    Args:
        application: the inner ASGI application.
        trusted_proxies: CIDRs whose forwarding headers are believed (None: settings).
        require_tls: refuse plain ``ws://`` (None: settings, i.e. unless DEBUG).
        validate_host: check ``Host`` against ``ALLOWED_HOSTS`` (None: settings).
        root_path: the ``root_path`` this deployment expects; any other value from an
            untrusted peer is refused (None: ``FORCE_SCRIPT_NAME`` or ``""``).
    """

    def __init__(
        self,
        application: ASGIApp,
        trusted_proxies: Sequence[str] | None = None,
        require_tls: bool | None = None,
        validate_host: bool | None = None,
        root_path: str | None = None,
    ) -> None:
        super().__init__(application)
        self.trusted_proxies = None if trusted_proxies is None else tuple(trusted_proxies)
        self.require_tls = require_tls
        self.validate_host = validate_host
        self.root_path = root_path

    async def check(self, scope: Scope) -> None:
        settings = get_settings()
        info = get_connection_info(scope)
        client = scope.get("client")
        peer = str(client[0]) if client else None
        info.client_ip = peer or ""
        headers = get_headers(scope)
        for name in SINGLE_HEADERS:
            if headers.count(name) > 1:
                raise Refused(Reason.BAD_HANDSHAKE, f"duplicate {name} header")
        trusted_proxies = (
            settings.TRUSTED_PROXIES if self.trusted_proxies is None else self.trusted_proxies
        )
        # One authority for proxy headers: warn (once) if uvicorn already rewrote them.
        warn_if_server_rewrites_proxy_headers(tuple(trusted_proxies))
        trusted = _networks(trusted_proxies)
        info.client_ip, info.scheme, via_proxy = resolve_client(
            peer,
            headers.get("x-forwarded-for"),
            headers.get("x-forwarded-proto"),
            _TLS_SCHEMES.get(str(scope.get("scheme", "ws")), "ws"),
            trusted,
        )
        info.user_agent = (headers.get("user-agent") or "")[:MAX_USER_AGENT_CHARS]
        host = headers.get("host") or ""
        info.host = host[:255]

        expected_root = self.root_path
        if expected_root is None:
            expected_root = getattr(django_settings, "FORCE_SCRIPT_NAME", None) or ""
        if scope.get("root_path", "") != expected_root and not via_proxy:
            raise Refused(Reason.BAD_HANDSHAKE, "root path set by an untrusted client")

        version = headers.get("sec-websocket-version")
        if version is not None and version.strip() != "13":
            raise Refused(Reason.BAD_HANDSHAKE, "unsupported Sec-WebSocket-Version")

        require_tls = settings.tls_required if self.require_tls is None else self.require_tls
        if require_tls and info.scheme != "wss":
            raise Refused(Reason.TLS_REQUIRED, "handshake did not arrive over TLS")

        check_host = settings.VALIDATE_HOST if self.validate_host is None else self.validate_host
        if check_host and not host_is_allowed(host):
            raise Refused(Reason.HOST_NOT_ALLOWED, "Host not in ALLOWED_HOSTS")
