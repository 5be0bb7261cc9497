"""Gate step 2: a per-client-IP token bucket on handshakes.

A handshake costs the server a TLS session, a token check and often a database row; a
client that opens them in a loop can exhaust a process without ever sending a message
(OWASP WebSocket cheat sheet, "rate limiting"). Each client IP (IPv6 by its /64, since one
host usually owns the whole prefix) gets a bucket of ``HANDSHAKE_BURST`` tokens refilled at
``HANDSHAKE_RATE`` per minute. With Redis the bucket lives there and is updated by one Lua
script in one round trip, so all processes share it; without Redis it is in-process.

It runs right after the client address is known and before any other check: every attempt
takes a token, whether a later step would refuse it for its Origin, Host, transport or
credentials or not, so a flood of refused handshakes is throttled like an accepted one and
costs no origin, Host or credential work once the bucket is empty.

In :func:`~secure_ws.gate.stack.secure_websocket` the step *defers* its Redis call
(``defer=True``): the token is taken in the handshake's one admission call
(:mod:`secure_ws.gate.admission`), and any refusal before that call takes it first, so the
two rules above hold as seen from outside; what a flood with an empty bucket still costs is
the CPU-only checks (Host, Origin, a token's signature), never a database query.
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict
from functools import lru_cache
from typing import Any

import redis.exceptions

from secure_ws.codes import Reason
from secure_ws.conf import get_settings
from secure_ws.connection import ConnectionInfo
from secure_ws.exceptions import BackendUnavailable, Refused
from secure_ws.gate.admission import ThrottleRequest, defer_throttle
from secure_ws.gate.base import ASGIApp, GateStep, Scope
from secure_ws.state import LuaScript, get_redis, key

#: Bucket state: KEYS[1] hash {tokens, ts}; ARGV rate per second, burst. Returns 1 or 0.
_BUCKET_SCRIPT = LuaScript("""
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 1)
return allowed
""")

#: In-process buckets kept at most; the least recently used are dropped first.
MAX_LOCAL_BUCKETS = 100_000


@lru_cache(maxsize=4096)
def rate_key_for(client_ip: str) -> str:
    """Return the bucket identity of an address: the IPv4 address or the IPv6 /64."""
    try:
        address = ipaddress.ip_address(client_ip)
    except ValueError:
        return client_ip or "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


class TokenBucket:
    """An in-process token bucket per key, bounded in memory (one process only)."""

    def __init__(self, max_keys: int = MAX_LOCAL_BUCKETS) -> None:
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def allow(self, bucket: str, rate_per_second: float, burst: int) -> bool:
        """Take one token from ``bucket``; return whether there was one."""
        now = time.monotonic()
        tokens, stamp = self._buckets.pop(bucket, (float(burst), now))
        tokens = min(float(burst), tokens + (now - stamp) * rate_per_second)
        allowed = tokens >= 1
        if allowed:
            tokens -= 1
        self._buckets[bucket] = (tokens, now)
        if len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return allowed

    def clear(self) -> None:
        """Forget every bucket."""
        self._buckets.clear()


_local_buckets = TokenBucket()


async def allow_handshake(client_ip: str, rate_per_minute: int, burst: int) -> bool:
    """Take one handshake token for ``client_ip``; return whether it was allowed.

    Raises:
        BackendUnavailable: Redis is configured but did not answer (fail closed).
    """
    bucket = rate_key_for(client_ip)
    rate = rate_per_minute / 60.0
    client = get_redis()
    if client is None:
        return _local_buckets.allow(bucket, rate, burst)
    try:
        result: Any = await _BUCKET_SCRIPT(client, [key("hs", bucket)], [rate, burst])
    except (redis.exceptions.RedisError, OSError) as exc:
        raise BackendUnavailable("handshake throttle: Redis unavailable") from exc
    return bool(int(result))


class HandshakeThrottleMiddleware(GateStep):
    """Refuse a client IP's handshakes beyond its token bucket (HTTP 403 / 4429).

    Args:
        application: the inner ASGI application.
        rate: handshakes per minute per client IP (None: settings ``HANDSHAKE_RATE``).
        burst: bucket size (None: settings ``HANDSHAKE_BURST``).
        defer: with Redis, take the token in the handshake's admission call instead of a
            call of its own; only for stacks whose every refusal path settles it (the
            steps of :mod:`secure_ws.gate` do, see :func:`secure_websocket`).
    """

    def __init__(
        self,
        application: ASGIApp,
        rate: int | None = None,
        burst: int | None = None,
        defer: bool = False,
    ) -> None:
        super().__init__(application)
        self.rate = rate
        self.burst = burst
        self.defer = defer

    async def check(self, scope: Scope, info: ConnectionInfo) -> None:
        settings = get_settings()
        rate = settings.HANDSHAKE_RATE if self.rate is None else self.rate
        burst = settings.HANDSHAKE_BURST if self.burst is None else self.burst
        if self.defer and get_redis() is not None:
            bucket = key("hs", rate_key_for(info.client_ip))
            defer_throttle(scope, ThrottleRequest(bucket, rate / 60.0, burst))
            return
        if not await allow_handshake(info.client_ip, rate, burst):
            raise Refused(Reason.HANDSHAKE_RATE_LIMITED, "handshake bucket empty")
