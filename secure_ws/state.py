"""Shared state: the one Redis client of a process, and key naming.

Every part of secure_ws that shares state across processes (handshake buckets, connection
caps, tickets, the user-state cache) goes through :func:`get_redis`; nobody opens their own
pool. Which Redis is :func:`redis_host`'s answer: ``REDIS_URL``, else ``REDIS_HOST`` (a
channels-redis host entry, Sentinel included), else the channels-redis channel layer's
first host. Without any it returns ``None`` and callers fall back to in-process state,
which only holds for a single process.

``redis.asyncio`` clients are bound to the event loop that created them, so the client is
kept per running loop: daphne and uvicorn run one loop per process and get one client,
while test runners that create a loop per test get a fresh client each time (close it with
:func:`close_redis` before the loop ends).
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import weakref
from collections.abc import Awaitable, Callable
from functools import lru_cache
from typing import Any

import redis
import redis.asyncio
import redis.exceptions
from django.conf import settings as django_settings

from secure_ws.conf import get_settings, register_cache_clearer
from secure_ws.redis_hosts import (
    async_client,
    channel_layer_host,
    close_client,
    decode_host,
    sync_client,
)

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, redis.asyncio.Redis] = (
    weakref.WeakKeyDictionary()
)
_clients_lock = threading.Lock()

#: Seconds a Redis command (or a connect) may take before it counts as unavailable.
SOCKET_TIMEOUT = 2.0

#: Redis connections per pool (one async pool per event loop, one sync pool per process).
#: The pools BLOCK when all are busy (waiting at most ``SOCKET_TIMEOUT``) instead of
#: raising: redis-py 8's default pool raises ``MaxConnectionsError`` at 100 in flight,
#: which turned bursts of good clients into spurious ``backend_unavailable`` refusals.
MAX_CONNECTIONS = 100


def command_deadline() -> asyncio.Timeout:
    """Bound one Redis call: ``async with command_deadline(): await client.get(...)``.

    The async client is built without redis-py's ``socket_timeout``, which wraps every
    write in ``asyncio.wait_for`` (a new task per command on Python 3.11: about an eighth
    of the gate's handshake cost). Callers bound their own calls with this cheap context
    manager instead; the ``TimeoutError`` it raises is an ``OSError``, which the gate
    already turns into ``BackendUnavailable`` (fail closed).
    """
    return asyncio.timeout(SOCKET_TIMEOUT)


@lru_cache(maxsize=1)
def redis_host() -> dict[str, Any] | None:
    """The shared state's Redis as a channels-redis host dict, or ``None`` (in-process).

    ``REDIS_URL``, else ``REDIS_HOST``, else (when neither key is in ``SECURE_WS``) the
    default channels-redis layer's first host. A key set to ``None`` keeps state in-process.
    """
    settings = get_settings()
    if settings.REDIS_URL is not None:
        return {"address": settings.REDIS_URL}
    if settings.REDIS_HOST is not None:
        return decode_host(settings.REDIS_HOST)
    if settings.redis_follows_channel_layer:
        return channel_layer_host(getattr(django_settings, "CHANNEL_LAYERS", None))
    return None


register_cache_clearer(redis_host.cache_clear)


def get_redis() -> redis.asyncio.Redis | None:
    """Return the Redis client of the running event loop, or ``None`` without a Redis.

    Raises:
        RuntimeError: when called outside a running event loop.
    """
    host = redis_host()
    if host is None:
        return None
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        with _clients_lock:
            client = _clients.get(loop)
            if client is None:
                client = async_client(host, max_connections=MAX_CONNECTIONS, timeout=SOCKET_TIMEOUT)
                _clients[loop] = client
    return client


_close_hooks: list[Callable[[], Awaitable[None]]] = []


def register_close_hook(hook: Callable[[], Awaitable[None]]) -> None:
    """Run ``hook`` in :func:`close_redis` before the client closes (e.g. stop a subscriber)."""
    if hook not in _close_hooks:
        _close_hooks.append(hook)


async def close_redis() -> None:
    """Close the running loop's client, if any (tests call it before their loop ends)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    for hook in _close_hooks:
        await hook()
    client = _clients.pop(loop, None)
    if client is not None:
        await close_client(client)


@lru_cache(maxsize=1)
def get_sync_redis() -> redis.Redis | None:
    """Return the process's synchronous client (for signal receivers), or ``None``."""
    host = redis_host()
    if host is None:
        return None
    return sync_client(host, max_connections=MAX_CONNECTIONS, timeout=SOCKET_TIMEOUT)


register_cache_clearer(get_sync_redis.cache_clear)


def key(*parts: object) -> str:
    """Return a Redis key under the settings' ``KEY_PREFIX``: ``key("caps", 7)``."""
    return ":".join((get_settings().KEY_PREFIX, *(str(part) for part in parts)))


class LuaScript:
    """A Lua script run by SHA (one round trip), loaded on the first ``NOSCRIPT``."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    async def __call__(
        self, client: redis.asyncio.Redis, keys: list[str], args: list[object]
    ) -> Any:
        """Run the script within :func:`command_deadline`; errors propagate to the caller."""
        async with command_deadline():
            try:
                return await client.evalsha(self.sha, len(keys), *keys, *args)  # type: ignore[arg-type]
            except redis.exceptions.NoScriptError:
                return await client.eval(self.source, len(keys), *keys, *args)  # type: ignore[arg-type]
