"""Gate step 1: who is connecting: the real client address, before anything else.

Finds the real client address and scheme (``X-Forwarded-For`` / ``X-Forwarded-Proto`` are
believed only when the socket peer is a trusted proxy; the right-most untrusted hop wins,
so a client cannot prepend a fake address). It refuses nothing a client controls: the
handshake throttle runs right after it and must count every attempt, including the ones
that later steps refuse for their Origin, Host, transport or credentials. Those checks
live in :mod:`secure_ws.gate.transport` and later steps.

It also records the ``User-Agent`` and ``Host`` for the audit (leniently decoded here;
the transport step refuses non-UTF-8 bytes); :class:`~secure_ws.connection.ConnectionInfo`
escapes them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from functools import lru_cache

from secure_ws.codes import Reason
from secure_ws.conf import get_settings, register_cache_clearer
from secure_ws.connection import MAX_USER_AGENT_CHARS, ConnectionInfo
from secure_ws.exceptions import Refused
from secure_ws.gate.base import ASGIApp, GateStep, Scope
from secure_ws.gate.handshake import lenient_headers
from secure_ws.gate.server_proxy import warn_if_server_rewrites_proxy_headers

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: ASGI ``scheme`` and ``X-Forwarded-Proto`` values, as WebSocket schemes.
TLS_SCHEMES = {"https": "wss", "wss": "wss", "http": "ws", "ws": "ws"}

#: The headers this step reads, in one pass over the raw list.
_READ = frozenset({b"x-forwarded-for", b"x-forwarded-proto", b"user-agent", b"host"})


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
        scheme = TLS_SCHEMES.get(proto, "ws")
    return client, scheme, True


class ClientAddressMiddleware(GateStep):
    """Resolve the real client address and scheme; record what the audit needs.

    Args:
        application: the inner ASGI application.
        trusted_proxies: CIDRs whose forwarding headers are believed (None: settings).
    """

    def __init__(self, application: ASGIApp, trusted_proxies: Sequence[str] | None = None) -> None:
        super().__init__(application)
        self.trusted_proxies = None if trusted_proxies is None else tuple(trusted_proxies)

    async def check(self, scope: Scope, info: ConnectionInfo) -> None:
        client = scope.get("client")
        peer = str(client[0]) if client else None
        info.client_ip = peer or ""
        trusted_proxies = (
            get_settings().TRUSTED_PROXIES if self.trusted_proxies is None else self.trusted_proxies
        )
        # One authority for proxy headers: warn (once) if uvicorn already rewrote them.
        warn_if_server_rewrites_proxy_headers(tuple(trusted_proxies))
        trusted = _networks(tuple(trusted_proxies))
        headers = lenient_headers(scope, _READ)
        info.client_ip, info.scheme, info.via_trusted_proxy = resolve_client(
            peer,
            headers.get(b"x-forwarded-for"),
            headers.get(b"x-forwarded-proto"),
            TLS_SCHEMES.get(str(scope.get("scheme", "ws")), "ws"),
            trusted,
        )
        info.user_agent = headers.get(b"user-agent", "")[:MAX_USER_AGENT_CHARS]
        info.host = headers.get(b"host", "")[:255]
