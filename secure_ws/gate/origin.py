"""Gate step 4: the Origin check that stops cross-site WebSocket hijacking (CSWSH).

Browsers attach cookies to WebSocket handshakes from any site, and the same-origin policy
does not apply to WebSockets: the ``Origin`` header is the only thing that tells a
legitimate page from an attacker's page. The allow-list holds exact ``scheme://host[:port]``
entries and ``https://*.example.com`` wildcard entries (subdomains only). The header is
parsed strictly, so ``null``, suffix and prefix tricks (``good.example.evil.net``,
``evilgood.example``), userinfo (``https://good.example@evil.net``), other schemes, other
ports and junk ports (``http://x:99999``) are refused without an exception.

Without ``ALLOWED_ORIGINS`` the default follows Django's CSRF rules: the entries of
``CSRF_TRUSTED_ORIGINS``, plus the page's own origin (the handshake's scheme and a ``Host``
that is in ``ALLOWED_HOSTS``).

A missing ``Origin`` is not refused here: non-browser clients do not send one. The step
records it, and the credentials step accepts such a connection only with an
``Authorization`` header, which a browser page cannot set on a WebSocket.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from django.conf import settings as django_settings

from secure_ws.codes import Reason
from secure_ws.conf import get_settings, register_cache_clearer
from secure_ws.connection import ConnectionInfo
from secure_ws.exceptions import Refused
from secure_ws.gate.base import ASGIApp, GateStep, Scope
from secure_ws.gate.handshake import get_headers
from secure_ws.gate.transport import host_is_allowed
from secure_ws.origins import Origin, parse_origin

__all__ = [
    "ORIGIN_MISSING_KEY",
    "Origin",
    "OriginMiddleware",
    "OriginPolicy",
    "default_policy",
    "origin_is_missing",
    "parse_origin",
]

#: Scope flag the credentials step reads: the handshake carried no Origin header.
ORIGIN_MISSING_KEY = "secure_ws.origin_missing"

@dataclass(frozen=True)
class OriginPolicy:
    """A compiled allow-list: exact origins plus wildcard-subdomain origins."""

    exact: frozenset[Origin]
    wildcards: tuple[Origin, ...]
    same_origin: bool

    @classmethod
    def from_entries(cls, entries: Sequence[str], *, same_origin: bool) -> OriginPolicy:
        """Compile allow-list ``entries``; unparsable entries are ignored (a check reports them)."""
        exact: set[Origin] = set()
        wildcards: list[Origin] = []
        for entry in entries:
            origin = parse_origin(entry.strip().rstrip("/"), allow_wildcard=True)
            if origin is None:
                continue
            if origin.host.startswith("*."):
                wildcards.append(origin)
            else:
                exact.add(origin)
        return cls(frozenset(exact), tuple(wildcards), same_origin)

    def allows(self, origin: Origin, *, scheme: str, host: str) -> bool:
        """Return whether ``origin`` may open a connection that arrived as ``scheme``/``host``."""
        if origin in self.exact:
            return True
        for wildcard in self.wildcards:
            suffix = wildcard.host[1:]  # ".example.com"
            if (
                origin.scheme == wildcard.scheme
                and origin.port == wildcard.port
                and origin.host.endswith(suffix)
                and len(origin.host) > len(suffix)
            ):
                return True
        if self.same_origin and host:
            own = parse_origin(f"{'https' if scheme == 'wss' else 'http'}://{host.lower()}")
            return own is not None and own == origin and host_is_allowed(host)
        return False


@lru_cache(maxsize=1)
def default_policy() -> OriginPolicy:
    """Return the policy from ``ALLOWED_ORIGINS``, or Django's CSRF-style default."""
    configured = get_settings().ALLOWED_ORIGINS
    if configured is not None:
        return OriginPolicy.from_entries(configured, same_origin=False)
    trusted = list(getattr(django_settings, "CSRF_TRUSTED_ORIGINS", []))
    return OriginPolicy.from_entries(trusted, same_origin=True)


register_cache_clearer(default_policy.cache_clear)


class OriginMiddleware(GateStep):
    """Refuse handshakes whose ``Origin`` is not allowed (CSWSH protection).

    Args:
        application: the inner ASGI application.
        allowed_origins: exact or ``https://*.domain`` entries (None: settings and the
            CSRF-style default).
        check_origin: turn the check off entirely (None: settings ``CHECK_ORIGIN``).
    """

    def __init__(
        self,
        application: ASGIApp,
        allowed_origins: Sequence[str] | None = None,
        check_origin: bool | None = None,
    ) -> None:
        super().__init__(application)
        self.policy = (
            None
            if allowed_origins is None
            else OriginPolicy.from_entries(allowed_origins, same_origin=False)
        )
        self.check_origin = check_origin

    async def check(self, scope: Scope, info: ConnectionInfo) -> None:
        headers = get_headers(scope)
        if headers.count("origin") > 1:
            raise Refused(Reason.ORIGIN_REFUSED, "duplicate Origin header")
        value = headers.get("origin")
        enabled = get_settings().CHECK_ORIGIN if self.check_origin is None else self.check_origin
        if value is None:
            info.origin = None
            if enabled:
                scope[ORIGIN_MISSING_KEY] = True
            return
        origin = parse_origin(value)
        # Store only the normalised form: raw header bytes may be hostile.
        info.origin = str(origin) if origin is not None else "<invalid>"
        if not enabled:
            return
        if origin is None:
            raise Refused(Reason.ORIGIN_REFUSED, "unparsable Origin")
        policy = default_policy() if self.policy is None else self.policy
        if not policy.allows(origin, scheme=info.scheme, host=info.host):
            raise Refused(Reason.ORIGIN_REFUSED, f"origin {origin} not allowed")


def origin_is_missing(scope: dict[str, Any]) -> bool:
    """Return whether the origin step saw a handshake without an ``Origin`` header."""
    return bool(scope.get(ORIGIN_MISSING_KEY))
