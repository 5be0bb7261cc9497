"""Settings of the benchmark servers: the demo project with the limits raised.

The benchmark measures what the gate and the consumer *cost*, not what they refuse, so the
handshake, message and connection limits are raised through the ``SECURE_WS_*`` environment
variables the demo reads (DESIGN.md), and the rest directly here. Everything else (token
validation, origin checks, caps bookkeeping, audit, validation) stays on.

Environment read here (set by :mod:`bench.services`):
``BENCH_DATABASE_URL`` (default: PostgreSQL database ``secure_ws_bench`` on 127.0.0.1),
``BENCH_REDIS_URL`` (the bench's own redis-server), ``BENCH_AUDIT`` (``1``/``0``).
"""

from __future__ import annotations

import os
import uuid
from datetime import timedelta

os.environ.setdefault("SECRET_KEY", "bench-secret-key-" + "b" * 40)
os.environ.setdefault("JWT_SIGNING_KEY", "bench-jwt-signing-key-" + "j" * 40)
os.environ.setdefault("DEBUG", "0")
os.environ["DATABASE_URL"] = os.environ.get(
    "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/secure_ws_bench"
)
os.environ["REDIS_URL"] = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6399/0")
os.environ.setdefault("SECURE_WS_KEY_PREFIX", f"swbench-{uuid.uuid4().hex[:12]}")
os.environ.setdefault("SECURE_WS_ALLOWED_ORIGINS", "http://127.0.0.1")
os.environ.setdefault("SECURE_WS_REQUIRE_TLS", "0")
os.environ.setdefault("SECURE_WS_HANDSHAKE_RATE", str(10**9))
os.environ.setdefault("SECURE_WS_MESSAGE_RATE", str(10**7))
os.environ.setdefault("SECURE_WS_MAX_CONNECTIONS_PER_USER", str(10**6))
os.environ.setdefault("SECURE_WS_MAX_CONNECTIONS_PER_IP", str(10**6))
os.environ.setdefault("THROTTLE_TOKEN_RATE", f"{10**9}/min")
os.environ.setdefault("THROTTLE_TOKEN_REFRESH_RATE", f"{10**9}/min")
os.environ.setdefault("THROTTLE_WS_TICKET_RATE", f"{10**9}/min")
os.environ.setdefault("SECURE_WS_LOG_LEVEL", "WARNING")

from project.settings import *  # noqa: F403
from project.settings import SECURE_WS, SIMPLE_JWT

# Tokens minted by the coordinator must outlive the longest run (the soak: 30 minutes).
SIMPLE_JWT = {**SIMPLE_JWT, "ACCESS_TOKEN_LIFETIME": timedelta(hours=2)}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
SECURE_WS = {
    **SECURE_WS,
    "HANDSHAKE_BURST": 10**6,
    "MESSAGE_BURST": 10**6,
    "BYTE_RATE": 10**9,
    "MAX_TOKEN_LIFETIME": 3 * 3600,
    "AUDIT_ENABLED": os.environ.get("BENCH_AUDIT", "1") == "1",
    # "No audit" means none: AUDIT_ENABLED = False alone keeps the metrics sink running.
    **({} if os.environ.get("BENCH_AUDIT", "1") == "1" else {"AUDIT_SINKS": []}),
}
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    # The audit trail is part of what is measured when it is on: keep its log lines.
    "loggers": {"secure_ws.audit": {"level": "INFO"}},
}
