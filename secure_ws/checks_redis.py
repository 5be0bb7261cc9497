"""System check W032: the gate's shared state has no Redis outside DEBUG.

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
=====  ====================================================================  ========
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured

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
