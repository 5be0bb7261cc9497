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
W032   no Redis for the shared state (per-process caps, buckets, tickets)       yes
E090   ``REFUSAL_MODE = "close"`` with ``DEBUG`` off
E091   ``METRICS_ENABLED`` without prometheus-client (the ``[metrics]`` extra)
E092   django-csp configured but not installed (the ``[csp]`` extra)
=====  ======================================================================  ========

One module per topic: ``values`` (E001), ``origin`` (E002-W004), ``routes`` (E010/W011),
``gate`` (E020-W024), ``channel_layer`` (E030/W031), ``jwt`` (E040-W045), ``transport``
(W050/W051), ``csp`` (W060/W061), ``shared_state`` (W032, W031 for ``REDIS_HOST`` and
Sentinel entries), ``extras`` (E090-E092). Importing this package registers every check.
"""

from __future__ import annotations

from secure_ws.checks.channel_layer import (
    check_channel_layer,
)
from secure_ws.checks.csp import (
    check_content_security_policy,
)
from secure_ws.checks.extras import (
    check_csp_extra,
    check_metrics_extra,
    check_refusal_mode,
)
from secure_ws.checks.gate import (
    check_ambient_credentials,
    check_weakened_gate,
)
from secure_ws.checks.jwt import (
    MIN_HMAC_KEY_BYTES,
    check_blacklist_installed,
    check_jwt_signing_key,
    check_password_change_revokes_tokens,
    check_token_lifetime,
)
from secure_ws.checks.origin import (
    check_origin_entries,
    check_origin_policy,
)
from secure_ws.checks.routes import (
    WebSocketRoute,
    check_websocket_routes,
    walk_websocket_routes,
)
from secure_ws.checks.shared_state import (
    check_shared_state_redis,
    check_shared_state_redis_transport,
)
from secure_ws.checks.transport import (
    check_message_size,
    check_server_limits_declared,
)
from secure_ws.checks.values import (
    check_settings_values,
    settings_valid,
)

__all__ = [
    "MIN_HMAC_KEY_BYTES",
    "WebSocketRoute",
    "check_ambient_credentials",
    "check_blacklist_installed",
    "check_channel_layer",
    "check_content_security_policy",
    "check_csp_extra",
    "check_jwt_signing_key",
    "check_message_size",
    "check_metrics_extra",
    "check_origin_entries",
    "check_origin_policy",
    "check_password_change_revokes_tokens",
    "check_refusal_mode",
    "check_server_limits_declared",
    "check_settings_values",
    "check_shared_state_redis",
    "check_shared_state_redis_transport",
    "check_token_lifetime",
    "check_weakened_gate",
    "check_websocket_routes",
    "settings_valid",
    "walk_websocket_routes",
]
