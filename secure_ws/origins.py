"""Origins (``scheme://host[:port]``), parsed strictly: one parser for everything.

The gate's allow-list and Origin check, the ticket view, the system checks and the CSP
``connect-src`` sources all parse origins here, so a string that one of them accepts means
the same origin to all of them. Nothing here imports Django (settings files use it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["DEFAULT_PORTS", "Origin", "parse_origin"]

DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_ORIGIN_RE = re.compile(
    r"(?P<scheme>[a-z][a-z0-9+.-]{0,15})://"
    r"(?P<host>(?:\*\.)?[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?|\[[0-9a-f:.]{2,45}\])"
    r"(?::(?P<port>[0-9]{1,5}))?"
)


@dataclass(frozen=True)
class Origin:
    """A parsed origin: scheme, lower-case host and explicit port."""

    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        if DEFAULT_PORTS.get(self.scheme) == self.port:
            return f"{self.scheme}://{self.host}"
        return f"{self.scheme}://{self.host}:{self.port}"


def parse_origin(value: str, *, allow_wildcard: bool = False) -> Origin | None:
    """Parse ``scheme://host[:port]`` strictly; return ``None`` for anything else.

    No path, query, userinfo, whitespace, non-ASCII or out-of-range port is accepted, so
    an attacker cannot make two different strings compare equal after parsing.
    """
    match = _ORIGIN_RE.fullmatch(value.lower()) if len(value) <= 300 else None
    if match is None or value != value.strip():
        return None
    scheme, host, port_text = match["scheme"], match["host"], match["port"]
    if host.startswith("*.") and not allow_wildcard:
        return None
    if ".." in host:
        return None
    if port_text is None:
        port = DEFAULT_PORTS.get(scheme)
        if port is None:
            return None
    else:
        port = int(port_text)
        if not 0 < port <= 65535:
            return None
    return Origin(scheme, host, port)
