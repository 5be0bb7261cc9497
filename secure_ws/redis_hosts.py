"""Redis host entries in channels-redis's format, and the clients built from them.

One format for the channel layer and the gate's shared state, so one Sentinel (or one URL)
configures both. An entry is what channels-redis 4.3 accepts in ``CONFIG["hosts"]``:

* a URL: ``"redis://:pw@redis.internal:6379/0"`` (``rediss://`` and ``unix://`` too);
* a pair ``("redis.internal", 6379)``;
* a dict ``{"address": url, **connection_kwargs}``;
* a Sentinel dict ``{"sentinels": [("s1", 26379)], "master_name": "mymaster",
  "sentinel_kwargs": {...}, **connection_kwargs}``: the client asks the Sentinels for the
  current master before every new connection, so it follows a failover by itself;
* any other dict: keyword arguments of a connection pool (``host``, ``port``, ``db``...).

secure_ws sizes and times its own pools (one pool serves every handshake of a process), so
``max_connections``, ``timeout`` and ``socket_timeout`` in an entry are ignored here.
This module imports nothing from secure_ws: :mod:`secure_ws.conf` validates with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.sentinel
import redis.sentinel

_SCHEMES = ("redis://", "rediss://", "unix://")
#: Pool sizing and timeouts secure_ws chooses itself (see the module docstring).
_OWN_POOL_KWARGS = frozenset({"max_connections", "timeout", "socket_timeout"})
#: The channel-layer backends whose ``CONFIG["hosts"]`` the shared state can follow.
CHANNELS_REDIS_BACKENDS = frozenset(
    {"channels_redis.core.RedisChannelLayer", "channels_redis.pubsub.RedisPubSubChannelLayer"}
)


def is_redis_url(value: object) -> bool:
    """Whether ``value`` is a ``redis://``, ``rediss://`` or ``unix://`` URL."""
    return isinstance(value, str) and value.startswith(_SCHEMES)


def _is_address_pair(value: object) -> bool:
    return (
        isinstance(value, list | tuple)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], int)
        and not isinstance(value[1], bool)
    )


def is_redis_host(value: object) -> bool:
    """Whether ``value`` is one channels-redis ``hosts`` entry secure_ws can connect to."""
    if is_redis_url(value) or _is_address_pair(value):
        return True
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        return False
    if "master_name" in value:
        sentinels = value.get("sentinels")
        return (
            isinstance(value["master_name"], str)
            and bool(value["master_name"])
            and isinstance(sentinels, list | tuple)
            and bool(sentinels)
            and all(_is_address_pair(s) for s in sentinels)
            and isinstance(value.get("sentinel_kwargs") or {}, Mapping)
            and "address" not in value
        )
    if "address" in value:
        return is_redis_url(value["address"])
    return isinstance(value.get("host", "localhost"), str)


def decode_host(entry: object) -> dict[str, Any]:
    """Return ``entry`` as a dict, the way channels-redis's ``decode_hosts`` reads it."""
    if isinstance(entry, Mapping):
        return dict(entry)
    if isinstance(entry, list | tuple):
        return {"host": entry[0], "port": entry[1]}
    return {"address": entry}


def channel_layer_host(channel_layers: object) -> dict[str, Any] | None:
    """The first host of the default channels-redis layer, or ``None`` for any other layer.

    A sharded layer (several hosts) shares its state through its first host: every process
    reads the same settings, so every process picks the same one.
    """
    if not isinstance(channel_layers, Mapping):
        return None
    layer = channel_layers.get("default")
    if not isinstance(layer, Mapping) or layer.get("BACKEND") not in CHANNELS_REDIS_BACKENDS:
        return None
    hosts = (layer.get("CONFIG") or {}).get("hosts")
    if not hosts:
        return {"address": "redis://localhost:6379"}  # channels-redis's own default
    if isinstance(hosts, str | bytes) or not is_redis_host(hosts[0]):
        return None  # channels-redis itself refuses it
    return decode_host(hosts[0])


def describe(host: Mapping[str, Any]) -> str:
    """A log-safe name for ``host``: no password, no URL credentials."""
    if "master_name" in host:
        return f"sentinel master {host['master_name']!r}"
    if "address" in host:
        address = str(host["address"])
        scheme, _, rest = address.partition("://")
        return f"{scheme}://{rest.rpartition('@')[2]}"
    return f"{host.get('host', 'localhost')}:{host.get('port', 6379)}"


class _BlockingSentinelPool(
    redis.asyncio.sentinel.SentinelConnectionPool, redis.asyncio.BlockingConnectionPool
):
    """A Sentinel pool that waits for a free connection instead of raising at the limit."""


def _split(host: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in host.items() if k not in _OWN_POOL_KWARGS}


def _sentinel_kwargs(host: Mapping[str, Any], timeout: float) -> dict[str, Any]:
    own = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    return {**own, **(host.get("sentinel_kwargs") or {})}


def async_client(
    host: Mapping[str, Any], *, max_connections: int, timeout: float
) -> redis.asyncio.Redis:
    """An asyncio client for ``host`` whose pool blocks at most ``timeout`` for a connection.

    Commands carry no socket timeout: callers bound them (``secure_ws.state.command_deadline``).
    """
    kwargs = _split(host)
    pool_kwargs: dict[str, Any] = {
        "max_connections": max_connections,
        "timeout": timeout,
        "socket_connect_timeout": kwargs.pop("socket_connect_timeout", timeout),
    }
    pool: redis.asyncio.ConnectionPool
    if "master_name" in kwargs:
        master_name = kwargs.pop("master_name")
        sentinels = [tuple(s) for s in kwargs.pop("sentinels")]
        sentinel = redis.asyncio.sentinel.Sentinel(  # type: ignore[no-untyped-call]
            sentinels, sentinel_kwargs=_sentinel_kwargs(kwargs, timeout)
        )
        kwargs.pop("sentinel_kwargs", None)
        pool = _BlockingSentinelPool(  # type: ignore[no-untyped-call]
            master_name, sentinel, **pool_kwargs, **kwargs
        )
    elif "address" in kwargs:
        address = kwargs.pop("address")
        pool = redis.asyncio.BlockingConnectionPool.from_url(address, **pool_kwargs, **kwargs)
    else:
        pool = redis.asyncio.BlockingConnectionPool(**pool_kwargs, **kwargs)
    return redis.asyncio.Redis.from_pool(pool)


async def close_client(client: redis.asyncio.Redis) -> None:
    """Close ``client`` and, behind a Sentinel, its connections to the Sentinels too."""
    pool = client.connection_pool
    await client.aclose()
    if isinstance(pool, redis.asyncio.sentinel.SentinelConnectionPool):
        await pool.sentinel_manager.aclose()


def sync_client(host: Mapping[str, Any], *, max_connections: int, timeout: float) -> redis.Redis:
    """A synchronous client for ``host`` (signal receivers, views), every call bounded."""
    kwargs = _split(host)
    pool_kwargs: dict[str, Any] = {
        "max_connections": max_connections,
        "socket_timeout": timeout,
        "socket_connect_timeout": kwargs.pop("socket_connect_timeout", timeout),
    }
    if "master_name" in kwargs:
        master_name = kwargs.pop("master_name")
        sentinels = [tuple(s) for s in kwargs.pop("sentinels")]
        sentinel = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call]
            sentinels, sentinel_kwargs=_sentinel_kwargs(kwargs, timeout)
        )
        kwargs.pop("sentinel_kwargs", None)
        client: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
            master_name, **pool_kwargs, **kwargs
        )
        return client
    pool: redis.ConnectionPool
    if "address" in kwargs:
        address = kwargs.pop("address")
        pool = redis.BlockingConnectionPool.from_url(
            address, timeout=timeout, **pool_kwargs, **kwargs
        )
    else:
        pool = redis.BlockingConnectionPool(timeout=timeout, **pool_kwargs, **kwargs)  # type: ignore[no-untyped-call]
    return redis.Redis.from_pool(pool)
