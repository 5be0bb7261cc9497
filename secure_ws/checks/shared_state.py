"""System checks W032 and W031: the gate's shared state has no Redis, or a plain remote one.

Without a Redis (no ``REDIS_URL``, no ``REDIS_HOST``, no channels-redis layer to follow, or
a key written as ``None``) the gate keeps its state in the process: every worker counts
its own connection caps and handshake buckets, a ticket works only on the process that
issued it, and a revocation closes sockets on that process only. That is right for one
process and silently wrong for several, so ``check --deploy`` says so.

=====  ====================================================================  ========
id     finds                                                                  deploy
=====  ====================================================================  ========
W032   no Redis for the shared state (in-process caps, buckets, tickets,      yes
       revocation) when not DEBUG
W031   a ``REDIS_HOST`` entry, or a Sentinel entry the state follows, that   yes
       reaches a host other than loopback without TLS, when not DEBUG
       (:mod:`secure_ws.checks` reports URLs of ``REDIS_URL`` and the layer)
=====  ====================================================================  ========
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured

from secure_ws.conf import get_settings
from secure_ws.state import redis_host


@register(Tags.security, deploy=True)
def check_shared_state_redis(
    app_configs: Sequence[AppConfig] | None, **kwargs: Any
) -> list[Warning]:
    """Report in-process shared state outside DEBUG (W032)."""
    if settings.DEBUG:
        return []
    try:
        host = redis_host()
    except ImproperlyConfigured:
        return []  # secure_ws.E001 reports the invalid value
    if host is not None:
        return []
    return [
        Warning(
            "secure_ws keeps its shared state in this process: connection caps and "
            "handshake buckets count per process, tickets work only on the process that "
            "issued them, and a revocation closes sockets on this process only.",
            hint="Set SECURE_WS['REDIS_URL'] or SECURE_WS['REDIS_HOST'] (a Sentinel entry "
            "works), or leave both out and use a channels-redis channel layer, whose Redis "
            "the state then follows. One process only: silence secure_ws.W032.",
            id="secure_ws.W032",
        )
    ]


def _is_loopback(hostname: str) -> bool:
    if hostname == "localhost" or hostname.startswith("/"):
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def plain_remote_host(host: Mapping[str, Any]) -> str | None:
    """The first host ``host`` reaches over plain TCP that is not loopback, or ``None``."""
    if "address" in host:
        parts = urlsplit(str(host["address"]))
        plain = parts.scheme == "redis" and not _is_loopback(parts.hostname or "")
        return parts.hostname if plain else None
    if host.get("ssl"):
        return None
    if "master_name" in host:
        names = [str(sentinel[0]) for sentinel in host["sentinels"]]
    else:
        names = [str(host.get("host", "localhost"))]
    return next((name for name in names if not _is_loopback(name)), None)


@register(Tags.security, deploy=True)
def check_shared_state_redis_transport(
    app_configs: Sequence[AppConfig] | None, **kwargs: Any
) -> list[Warning]:
    """W031 for the entries :func:`secure_ws.checks.check_channel_layer` cannot read."""
    if settings.DEBUG:
        return []
    try:
        host, own = redis_host(), get_settings().REDIS_HOST is not None
    except ImproperlyConfigured:
        return []
    if host is None or not (own or "master_name" in host):
        return []
    remote = plain_remote_host(host)
    if remote is None:
        return []
    return [
        Warning(
            f"Redis at {remote} is reached without TLS: tokens' revocation state and "
            "connection caps cross the network unencrypted.",
            hint="Use a rediss:// address, or ssl=True (and sentinel_kwargs with ssl=True) "
            "in the host entry (see docs/deploy.md), or keep Redis on loopback.",
            id="secure_ws.W031",
        )
    ]
