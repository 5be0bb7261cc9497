"""One authority for proxy headers: the gate, not the server in front of it.

uvicorn turns ``--proxy-headers`` on by default and believes ``X-Forwarded-For`` and
``X-Forwarded-Proto`` from ``--forwarded-allow-ips`` (127.0.0.1 by default): its
``ProxyHeadersMiddleware`` rewrites ``scope["client"]`` and ``scope["scheme"]`` before the
gate sees the scope, so ``SECURE_WS["TRUSTED_PROXIES"]`` no longer decides whom to believe
(and a local process can claim any client address, or TLS). secure_ws' deployment runs
uvicorn with ``--no-proxy-headers`` (deploy/uvicorn.sh, docs/deploy.md); this module warns
once per process when that flag is missing.

How it is detected, and why that way: the middleware wraps the application and *awaits*
it, so while the gate checks its first handshake, uvicorn's ``ProxyHeadersMiddleware``
frame is on the gate's own call stack. Walking a few frames up, once per process, is
exact and cheap. The alternatives are worse: comparing ``scope["client"]`` with the
request's ``X-Forwarded-For`` hops cannot tell a rewrite from a client that names its own
address (any client could trigger the warning, and a request without the header never
does), and uvicorn's ``Config`` object is not reachable from the application (finding it
means scanning the garbage collector's objects). The class is uvicorn's public middleware;
``tests/e2e/test_server_parity.py`` fails if a uvicorn release stops matching it.
"""

from __future__ import annotations

import logging
import sys
from types import FrameType

logger = logging.getLogger("secure_ws.gate")

#: How far up the stack to look: uvicorn's protocol, its middleware, Channels' routers and
#: the gate's steps are a few dozen frames at most.
MAX_FRAMES = 64

_checked = False


def find_server_proxy_middleware(frame: FrameType | None = None) -> object | None:
    """Return uvicorn's ``ProxyHeadersMiddleware`` instance if it is on the call stack.

    Args:
        frame: where to start looking (the caller's frame by default).
    """
    try:
        from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
    except ImportError:
        return None
    code = ProxyHeadersMiddleware.__call__.__code__
    current: FrameType | None = frame if frame is not None else sys._getframe(1)
    for _ in range(MAX_FRAMES):
        if current is None:
            return None
        if current.f_code is code:
            middleware = current.f_locals.get("self")
            return middleware if isinstance(middleware, ProxyHeadersMiddleware) else None
        current = current.f_back
    return None


def _describe_trusted(middleware: object) -> str:
    """uvicorn's ``--forwarded-allow-ips`` as the middleware holds it (best effort)."""
    trusted = getattr(middleware, "trusted_hosts", None)
    if getattr(trusted, "always_trust", False):
        return "*"
    entries = [
        *map(str, getattr(trusted, "trusted_hosts", ())),
        *map(str, getattr(trusted, "trusted_networks", ())),
        *map(str, getattr(trusted, "trusted_literals", ())),
    ]
    return ",".join(sorted(entries)) or "?"


def warn_if_server_rewrites_proxy_headers(trusted_proxies: tuple[str, ...]) -> bool:
    """Log one warning per process if uvicorn's proxy headers are on in front of the gate.

    Call it from a gate step's ``check`` (the server's middleware is then on the stack).
    Only the first call looks; later calls return at once.

    Returns:
        Whether this call logged the warning.
    """
    global _checked
    if _checked:
        return False
    _checked = True
    middleware = find_server_proxy_middleware(sys._getframe(1))
    if middleware is None:
        return False
    logger.warning(
        "uvicorn runs with proxy headers on (--forwarded-allow-ips=%s): it rewrites the "
        "client address and scheme from X-Forwarded-For/-Proto before secure_ws sees the "
        "handshake, so SECURE_WS['TRUSTED_PROXIES'] (%s) does not decide whom to believe. "
        "Run uvicorn with --no-proxy-headers (docs/deploy.md).",
        _describe_trusted(middleware),
        ",".join(trusted_proxies) or "empty",
    )
    return True
