"""The settings table: every ``SECURE_WS`` key declared once (type, default, check, doc).

Adding a setting is adding one field to :class:`SecureWSSettings`. :mod:`secure_ws.conf`
derives ``DEFAULTS`` and validation from it, :mod:`secure_ws.conf.doc` the settings reference.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from django.conf import settings as django_settings

from secure_ws.conf import rules as rule
from secure_ws.conf.rules import AUDIT_SINK_NAMES, setting
from secure_ws.redis_hosts import is_redis_host, is_redis_url

#: The sections of the settings reference, in the order the docs show them.
SECTIONS = (
    TRANSPORT := "Gate: client address and transport",
    ORIGIN := "Gate: origin",
    HANDSHAKES := "Gate: handshake rate",
    CREDENTIALS := "Gate: credentials",
    CAPS := "Gate: connection caps",
    REFUSALS := "Gate: refusals",
    SHARED := "Shared state",
    MESSAGES := "Consumer: frames and messages",
    REVOCATION := "Revocation",
    FILES := "File events",
    AUDIT := "Audit and metrics",
)


@dataclass(frozen=True)
class SecureWSSettings:
    """The validated ``SECURE_WS`` settings, and the table that declares them.

    Build it with :func:`get_settings`. Adding a setting is adding one field here.
    """

    # Gate: client address and transport.
    TRUSTED_PROXIES: tuple[str, ...] = setting(
        [], (rule.is_cidr_list, "a list of IP networks in CIDR form"), TRANSPORT,
        "CIDRs of the reverse proxies whose `X-Forwarded-For` / `X-Forwarded-Proto` are "
        "believed (a `Daphne-Root-Path` only with `TRUST_PROXY_ROOT_PATH`). The right-most hop "
        "that is not a trusted proxy is the client. From any other peer these headers change "
        "nothing. Do not also use daphne's `--proxy-headers`: it takes the left-most, "
        "client-written address.",
    )
    REQUIRE_TLS: bool | None = setting(
        None, (rule.optional(rule.is_bool), "True, False or None"), TRANSPORT,
        "`None`: a handshake must arrive over TLS (`wss://`, directly or as a trusted proxy "
        "says) unless `DEBUG`. `False` turns the requirement off (loopback tests, benchmarks); "
        "reported by `check --deploy`.",
    )
    VALIDATE_HOST: bool = setting(
        True, rule.BOOL, TRANSPORT,
        "Refuse a handshake whose `Host` is not in `ALLOWED_HOSTS` (Django checks it for HTTP, "
        "Channels does not for WebSockets).",
    )
    ROOT_PATH: str | None = setting(
        None,
        (
            rule.optional(rule.is_root_path),
            'None, "" or a path like "/app" (leading slash, no trailing slash)',
        ),
        TRANSPORT,
        'The one ASGI `root_path` this deployment serves under (`""` or `"/app"`); `None`: '
        '`FORCE_SCRIPT_NAME`, or `""` when that is unset. A handshake with any other '
        "`root_path` (daphne takes it from a client-sent `Daphne-Root-Path` header, and it "
        "changes routing) is refused as `bad_handshake`, whichever peer sent it.",
    )
    TRUST_PROXY_ROOT_PATH: bool = setting(
        False, rule.BOOL, TRANSPORT,
        "Believe any `root_path` when the socket peer is in `TRUSTED_PROXIES` (a proxy that sets "
        "`Daphne-Root-Path` per location). A proxy that passes the client's header on then lets "
        "clients change routing; reported by `check --deploy` (W025).",
    )
    # Gate: origin.
    ALLOWED_ORIGINS: tuple[str, ...] | None = setting(
        None, (rule.optional(rule.is_str_list), "a list of origins or None"), ORIGIN,
        "Exact `scheme://host[:port]` entries and `https://*.example.com` wildcard entries "
        "(subdomains only, same scheme and port). `None`: Django's CSRF rule — "
        "`CSRF_TRUSTED_ORIGINS` plus the page's own origin (handshake scheme + a `Host` in "
        "`ALLOWED_HOSTS`). The demo reads `SECURE_WS_ALLOWED_ORIGINS` (comma-separated).",
    )
    CHECK_ORIGIN: bool = setting(
        True, rule.BOOL, ORIGIN,
        "Turn the Origin check off entirely (only for APIs no browser can reach); reported by "
        "`check --deploy`.",
    )
    # Gate: handshake rate, per client IP.
    HANDSHAKE_RATE: int = setting(
        60, (rule.positive_int, "a positive int (handshakes per minute)"), HANDSHAKES,
        "Handshakes per minute per client IP (IPv6: per /64), refilled continuously. Shared "
        "through Redis when `REDIS_URL` is set. Demo: `SECURE_WS_HANDSHAKE_RATE`.",
    )
    HANDSHAKE_BURST: int = setting(
        20, rule.POSITIVE, HANDSHAKES,
        "Bucket size: how many handshakes an IP may open at once before the rate applies.",
    )
    # Gate: credentials.
    REQUIRE_AUTHENTICATION: bool = setting(
        True, rule.BOOL, CREDENTIALS,
        "Refuse handshakes without credentials. `False` lets anonymous connections through "
        "with `AnonymousUser`.",
    )
    ALLOW_SESSION_AUTH: bool = setting(
        False, rule.BOOL, CREDENTIALS,
        "Accept the Django session cookie. Cookies are ambient (CSWSH), so the Origin check "
        "must stay on; a missing Origin with a cookie is refused.",
    )
    ALLOW_QUERY_STRING_TOKEN: bool = setting(
        False, rule.BOOL, CREDENTIALS,
        "Accept a JWT as `?token=`. URLs end up in proxy and access logs; prefer the "
        "`bearer.<jwt>` subprotocol entry or a ticket. When off, such a handshake is refused "
        "(`query_token_refused`).",
    )
    MAX_CREDENTIAL_BYTES: int = setting(
        4096, rule.POSITIVE, CREDENTIALS,
        "Longest token or session cookie accepted; longer ones are refused before any parsing.",
    )
    TICKET_TTL: int = setting(
        30, rule.SECONDS, CREDENTIALS,
        "Seconds a one-time ticket from `POST /api/ws-ticket/` stays valid.",
    )
    USER_CACHE_TTL: float = setting(
        5.0, (rule.non_negative_number, "a non-negative number of seconds"), CREDENTIALS,
        "Seconds a user's state (exists, active, password fingerprint) may be served from the "
        "per-process cache. Invalidation through `invalidate_user()` reaches every process at "
        "once through Redis; this is the upper bound otherwise. `0` disables the cache (one "
        "query per handshake).",
    )
    MAX_TOKEN_LIFETIME: int = setting(
        900, rule.SECONDS, CREDENTIALS,
        "Seconds; an `ACCESS_TOKEN_LIFETIME` longer than this is a check warning (a WebSocket "
        "can outlive a revoked credential for that long).",
    )
    MAX_CONNECTION_AGE: int = setting(
        86400, rule.SECONDS, CREDENTIALS,
        "Seconds a connection with no credential expiry (an anonymous connection, or any other "
        "whose credential carries no `exp`) may stay open; it then closes 4401 "
        "`connection_too_old` so the client re-authenticates. Token, ticket and session "
        "connections end with their credential instead.",
    )
    # Gate: connection caps, across processes.
    MAX_CONNECTIONS_PER_USER: int = setting(
        10, rule.POSITIVE, CAPS,
        "Open connections per user, across all processes (Redis). Demo: "
        "`SECURE_WS_MAX_CONNECTIONS_PER_USER`.",
    )
    MAX_CONNECTIONS_PER_IP: int = setting(
        50, rule.POSITIVE, CAPS,
        "Open connections per client IP (IPv6: per /64), across all processes. Demo: "
        "`SECURE_WS_MAX_CONNECTIONS_PER_IP`.",
    )
    CONNECTION_SLOT_TTL: int = setting(
        60, rule.SECONDS, CAPS,
        "Seconds a slot survives without a heartbeat: a crashed process's slots stop counting "
        "after this. Live connections refresh every third of it.",
    )
    # Gate: how a refusal looks to the client.
    REFUSAL_MODE: Literal["reject", "close"] | None = setting(
        None, (rule.optional(rule.one_of("reject", "close")), "None, 'reject' or 'close'"),
        REFUSALS,
        '`"reject"`: a refused handshake gets HTTP 403 and no WebSocket opens. `"close"`: '
        "accept, send an `error` frame with the reason code, close with its close code (4401, "
        "4403, 4429, 1008, 1013; see [close codes](reference/close-codes.md)), so a developer "
        'sees why without reading server logs. `None`: `"close"` under `DEBUG`, `"reject"` '
        "otherwise; `\"close\"` with `DEBUG = False` is check error E090. The handshake throttle "
        "and the guard always answer a plain 403.",
    )
    REFUSAL_LOG_LINES: int = setting(
        20, (rule.positive_int, "a positive int (log lines per reason per interval)"), REFUSALS,
        "`connection refused` log lines written per reason code per `REFUSAL_LOG_INTERVAL`; "
        "further refusals with that reason are counted and reported in one `... and N more "
        "connection refusals with reason=X in the last 10 s` line when the interval ends. The "
        "audit still records every attempt.",
    )
    REFUSAL_LOG_INTERVAL: float = setting(
        10.0, rule.FLOAT_SECONDS, REFUSALS, "Seconds of that window."
    )
    # Shared state.
    REDIS_URL: str | None = setting(
        None, (rule.optional(is_redis_url), "None or a redis://, rediss:// or unix:// URL"),
        SHARED,
        "`redis://`, `rediss://` or `unix://` URL of the Redis that holds handshake buckets, "
        "connection caps, tickets, the user-state generations and the revocation channel. "
        "Redis errors where auth or caps depend on it refuse the handshake "
        "(`backend_unavailable`, 1013). Which Redis when unset: see `REDIS_HOST`.",
    )
    REDIS_HOST: str | Mapping[str, Any] | tuple[Any, ...] | None = setting(
        None,
        (
            rule.optional(is_redis_host),
            "None or a channels-redis host entry (URL, (host, port), dict or Sentinel dict)",
        ),
        SHARED,
        "The same Redis as one channels-redis `hosts` entry: a URL, `(\"host\", port)`, "
        '`{"address": url, **kwargs}` or a Sentinel entry `{"sentinels": [("host", 26379)], '
        '"master_name": "mymaster", "sentinel_kwargs": {...}}` (the client asks the Sentinels '
        "for the master, so it follows a failover without a restart; see "
        "[redis-sentinel.md](howto/redis-sentinel.md)). Set one of `REDIS_URL`/`REDIS_HOST`, not "
        "both. **When neither key is in `SECURE_WS`** the state follows "
        '`CHANNEL_LAYERS["default"]` if it is a channels-redis layer (its first host); a key '
        "written as `None` keeps state in-process (one process only; `check --deploy` warns, "
        "`secure_ws.W032`).",
    )
    KEY_PREFIX: str = setting(
        "secure_ws", (rule.is_non_empty_str, "a non-empty str"), SHARED,
        "Prefix of every Redis key secure_ws writes (and of the demo's channel-layer prefix).",
    )
    # Consumer: frames and messages.
    MAX_MESSAGE_BYTES: int = setting(
        65536, rule.BYTES, MESSAGES, "Largest text frame accepted; larger closes with 1009."
    )
    SERVER_MAX_MESSAGE_BYTES: int | None = setting(
        None, (rule.optional(rule.positive_int), "None or a positive int (bytes)"), MESSAGES,
        "The `--websocket-max-message-size` your daphne runs with (daphne's default is "
        "1048576), declared here because an application cannot read its server's command line. "
        "`check --deploy` warns when it is unset and when `MAX_MESSAGE_BYTES` is larger (the "
        "server would cut such messages with 1009 before secure_ws can answer `too_large`). "
        "See [deploy](deploy.md).",
    )
    MAX_JSON_DEPTH: int = setting(
        16, rule.POSITIVE, MESSAGES, "Deepest JSON nesting accepted in a message."
    )
    ALLOW_BINARY: bool = setting(
        False, rule.BOOL, MESSAGES,
        "Accept binary frames (consumers may opt in); otherwise close 1003.",
    )
    MESSAGE_RATE: float = setting(
        20.0, (rule.positive_number, "a positive number (messages per second)"), MESSAGES,
        "Messages per second per connection (token bucket). Demo: `SECURE_WS_MESSAGE_RATE`.",
    )
    MESSAGE_BURST: int = setting(40, rule.POSITIVE, MESSAGES, "Message bucket size.")
    BYTE_RATE: int = setting(
        262144, (rule.positive_int, "a positive int (bytes per second)"), MESSAGES,
        "Bytes per second per connection.",
    )
    RATE_LIMIT_CLOSE_AFTER: int = setting(
        20, rule.POSITIVE, MESSAGES,
        "Rate-limited messages in a row before the connection is closed with 4429.",
    )
    VIOLATION_LIMIT: int = setting(
        10, rule.POSITIVE, MESSAGES,
        "Invalid messages within `VIOLATION_WINDOW` before the connection is closed with 1008.",
    )
    VIOLATION_WINDOW: int = setting(
        60, rule.SECONDS, MESSAGES, "Seconds over which violations are counted."
    )
    IDLE_TIMEOUT: float | None = setting(
        None, (rule.optional(rule.positive_number), "None or a positive number of seconds"),
        MESSAGES,
        "Seconds without a client message before closing with 4408; `None`: no idle timeout.",
    )
    TOKEN_EXPIRY_WARNING: int = setting(
        60, (rule.non_negative_int, "a non-negative int (seconds)"), MESSAGES,
        "Seconds before the access token's `exp` that `auth.expiring` is sent; at `exp` the "
        "connection closes with 4401 unless `auth.refresh` extended it.",
    )
    MAX_PENDING_OUTPUT: int = setting(
        1024 * 1024, rule.BYTES, MESSAGES,
        "Bytes of output a client may leave unread (1 MiB) in the server's transport buffer; "
        "past it the connection closes 4429 `slow_consumer` (see [consumers](consumers.md)). "
        "Fan-out file events are dropped and counted once half of it is unread. Keep it well "
        "above your largest reply. Consumer attribute: `max_pending_output`.",
    )
    PENDING_OUTPUT_TIMEOUT: float = setting(
        10.0, rule.FLOAT_SECONDS, MESSAGES,
        "Seconds one send may wait for a client that does not read, on servers whose send waits "
        "for the socket to drain (uvicorn) and whose buffer therefore never reaches "
        "`MAX_PENDING_OUTPUT`; then the same 4429 `slow_consumer` close. Consumer attribute: "
        "`pending_output_timeout`.",
    )
    # Revocation.
    REVOKE_ON_LOGOUT: bool = setting(
        True, rule.BOOL, REVOCATION,
        "Close a user's live connections (and refuse the session's access tokens) when they log "
        "out or their refresh token is blacklisted.",
    )
    # File events.
    FOLDER_POLICY: str | None = setting(
        None, (rule.optional(rule.is_dotted_path), "None or a dotted path"), FILES,
        "Dotted path of the class that decides who may read or write a folder's events.",
    )
    SUBSCRIPTION_RECHECK_INTERVAL: float = setting(
        60.0, (rule.finite_non_negative_number, "a non-negative number of seconds"), FILES,
        "Seconds a subscription's confirmed read access is trusted: an event for a folder whose "
        "access was last confirmed longer ago re-checks `can_read` first, and a failed or "
        "unanswered check drops it. The bound on delivery after access is lost when the project "
        "does not call `folder_access_changed()`; `0` re-checks before every event.",
    )
    MAX_FILE_SIZE: int = setting(
        5 * 1024**3, rule.BYTES, FILES, "Largest `size` a file event may announce (bytes)."
    )
    ALLOWED_CONTENT_TYPES: tuple[str, ...] = setting(
        ["application/json", "application/pdf", "application/octet-stream", "application/zip",
         "image/gif", "image/jpeg", "image/png", "image/webp", "text/csv", "text/plain"],
        (rule.is_str_list, "a list of MIME types"), FILES,
        "MIME types a file event may carry (JSON, PDF, octet-stream, zip, GIF, JPEG, PNG, WebP, "
        "CSV, plain text).",
        shown_default="10 types",
    )
    # Audit and metrics.
    AUDIT_ENABLED: bool = setting(
        True, rule.BOOL, AUDIT,
        "Keep the audit trail (the `log` and `database` sinks). `False` turns the trail off but "
        "not the `metrics` sink.",
    )
    AUDIT_SINKS: tuple[str, ...] = setting(
        ["log", "metrics", "database"],
        (
            rule.is_sink_list,
            f"a list of distinct names from {list(AUDIT_SINK_NAMES)} or dotted paths to sink "
            "classes",
        ),
        AUDIT,
        "Where audit records go: `log` (one JSON line each on the `secure_ws.audit` logger), "
        "`metrics` (the Prometheus counters), `database` (the admin's rows), or the dotted path "
        "of your own sink class (see [audit](audit.md#your-own-sink)). Distinct entries; `[]` "
        "records nothing.",
    )
    AUDIT_BUFFER_SIZE: int = setting(
        10000, rule.POSITIVE, AUDIT,
        "Records held in memory (between two flushes, and again while waiting for the database) "
        "before new ones are counted (never silently dropped) instead of kept (the event loop "
        "never waits for the database).",
    )
    AUDIT_BATCH_SIZE: int = setting(500, rule.POSITIVE, AUDIT, "Records per database batch.")
    AUDIT_FLUSH_INTERVAL: float = setting(
        1.0, rule.FLOAT_SECONDS, AUDIT, "Seconds between batch writes."
    )
    AUDIT_AGGREGATE_THRESHOLD: int = setting(
        20, rule.POSITIVE, AUDIT,
        "Refusals per (client IP, reason, minute) written one by one; beyond it they are "
        'counted in one "N more like this" row.',
    )
    RETENTION_DAYS: int = setting(
        90, (rule.positive_int, "a positive int (days)"), AUDIT,
        "Days audit rows are kept by the prune command.",
    )
    METRICS_ENABLED: bool = setting(False, rule.BOOL, AUDIT, "Export Prometheus metrics.")
    METRICS_TOKEN: str | None = setting(
        None, (rule.optional(rule.is_long_secret), "a string of at least 16 characters or None"),
        AUDIT,
        "Bearer token a scraper presents to `/metrics`; `None`: only staff users may read it.",
    )
    #: Not a setting: neither REDIS_URL nor REDIS_HOST is in SECURE_WS, so the shared state
    #: follows the channel layer's Redis (set by :func:`build_settings`).
    redis_follows_channel_layer: bool = field(default=False)

    @property
    def tls_required(self) -> bool:
        """Whether a handshake must arrive over TLS (``REQUIRE_TLS``, or not ``DEBUG``)."""
        if self.REQUIRE_TLS is None:
            return not django_settings.DEBUG
        return self.REQUIRE_TLS

    @property
    def refusal_mode(self) -> Literal["reject", "close"]:
        """How a refusal looks (``REFUSAL_MODE``, or ``"close"`` only under ``DEBUG``)."""
        if self.REFUSAL_MODE is None:
            return "close" if django_settings.DEBUG else "reject"
        return self.REFUSAL_MODE
