"""Which Redis the shared state uses: REDIS_URL, REDIS_HOST, or the channel layer's (W032)."""

from __future__ import annotations

from typing import Any

import pytest
import redis
import redis.asyncio
import redis.sentinel
from django.conf import settings
from django.test import override_settings

from secure_ws import state
from secure_ws.checks.shared_state import (
    check_shared_state_redis,
    check_shared_state_redis_transport,
)
from secure_ws.conf import validate
from secure_ws.redis_hosts import async_client, channel_layer_host, describe, sync_client

SENTINEL = {"sentinels": [("10.0.0.7", 26379)], "master_name": "mymaster"}
CHANNELS_REDIS = "channels_redis.core.RedisChannelLayer"
IN_MEMORY = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


def layer(*hosts: object, backend: str = CHANNELS_REDIS) -> dict[str, Any]:
    return {"default": {"BACKEND": backend, "CONFIG": {"hosts": list(hosts)}}}


def without_redis(**overrides: Any) -> dict[str, Any]:
    """``SECURE_WS`` with neither REDIS_URL nor REDIS_HOST, plus ``overrides``."""
    base = {k: v for k, v in settings.SECURE_WS.items() if k not in ("REDIS_URL", "REDIS_HOST")}
    return {**base, **overrides}


@pytest.mark.parametrize(
    "host",
    [
        "redis://10.0.0.5:6379/0",
        "unix:///run/redis.sock",
        ("10.0.0.5", 6379),
        ["10.0.0.5", 6379],
        {"address": "rediss://:pw@cache.internal:6380/0", "socket_keepalive": True},
        {"host": "10.0.0.5", "port": 6379, "db": 2},
        SENTINEL,
        {**SENTINEL, "sentinel_kwargs": {"password": "s"}, "password": "m", "db": 1},
    ],
)
def test_channels_redis_host_entries_are_valid(host: object) -> None:
    assert validate({"REDIS_HOST": host}) == []


@pytest.mark.parametrize(
    "host",
    [
        "http://10.0.0.5",
        ("10.0.0.5", "6379"),
        {"address": "http://x"},
        {"master_name": "mymaster"},
        {"master_name": "mymaster", "sentinels": []},
        {"master_name": "", "sentinels": [("s", 26379)]},
        {"master_name": "m", "sentinels": [("s", 26379)], "sentinel_kwargs": "pw"},
        [("10.0.0.5", 6379)],
    ],
)
def test_malformed_host_entries_are_refused(host: object) -> None:
    assert [p.key for p in validate({"REDIS_HOST": host})] == ["REDIS_HOST"]


def test_redis_url_and_redis_host_together_are_refused() -> None:
    problems = validate({"REDIS_URL": "redis://a:6379/0", "REDIS_HOST": SENTINEL})
    assert [p.key for p in problems] == ["REDIS_HOST"]


@pytest.mark.parametrize(
    ("secure_ws", "layers", "expected"),
    [
        ({"REDIS_URL": "redis://a:6379/1"}, layer(SENTINEL), {"address": "redis://a:6379/1"}),
        ({"REDIS_HOST": SENTINEL}, IN_MEMORY, SENTINEL),
        ({"REDIS_HOST": ("b", 6380)}, IN_MEMORY, {"host": "b", "port": 6380}),
        ({}, layer(SENTINEL, "redis://other:6379"), SENTINEL),  # follows the first host
        ({}, layer("redis://c:6379/2"), {"address": "redis://c:6379/2"}),
        ({}, {"default": {"BACKEND": CHANNELS_REDIS}}, {"address": "redis://localhost:6379"}),
        ({}, IN_MEMORY, None),
        ({"REDIS_URL": None}, layer(SENTINEL), None),  # written out: in-process on purpose
        ({"REDIS_HOST": None}, layer(SENTINEL), None),
    ],
)
def test_the_shared_state_redis_is_chosen_in_order(
    secure_ws: dict[str, Any], layers: dict[str, Any], expected: object
) -> None:
    with override_settings(SECURE_WS=without_redis(**secure_ws), CHANNEL_LAYERS=layers):
        assert state.redis_host() == expected
    assert state.redis_host() == {"address": settings.SECURE_WS["REDIS_URL"]}


def test_the_pubsub_channel_layer_is_followed_too() -> None:
    layers = layer(SENTINEL, backend="channels_redis.pubsub.RedisPubSubChannelLayer")
    assert channel_layer_host(layers) == SENTINEL


def test_a_sentinel_entry_builds_clients_that_ask_the_sentinels() -> None:
    entry = {**SENTINEL, "sentinel_kwargs": {"password": "s"}, "db": 3, "max_connections": 7}
    client = async_client(entry, max_connections=100, timeout=2.0)
    pool: Any = client.connection_pool
    assert isinstance(pool, redis.asyncio.sentinel.SentinelConnectionPool)
    assert isinstance(pool, redis.asyncio.BlockingConnectionPool)  # waits, never raises
    assert pool.service_name == "mymaster"
    assert pool.max_connections == 100  # secure_ws sizes its own pool
    assert pool.connection_kwargs["db"] == 3
    sentinel_kwargs = pool.sentinel_manager.sentinels[0].connection_pool.connection_kwargs
    assert sentinel_kwargs["password"] == "s"
    assert sentinel_kwargs["socket_timeout"] == 2.0
    sync: Any = sync_client(entry, max_connections=100, timeout=2.0).connection_pool
    assert isinstance(sync, redis.sentinel.SentinelConnectionPool)
    assert sync.connection_kwargs["socket_timeout"] == 2.0


def test_descriptions_carry_no_password() -> None:
    assert describe({"address": "rediss://user:secret@h:6380/0"}) == "rediss://h:6380/0"
    assert "secret" not in describe({**SENTINEL, "password": "secret"})


def test_no_redis_outside_debug_is_a_deploy_warning() -> None:
    with override_settings(SECURE_WS=without_redis(), CHANNEL_LAYERS=IN_MEMORY, DEBUG=False):
        assert [m.id for m in check_shared_state_redis(None)] == ["secure_ws.W032"]
    with override_settings(SECURE_WS=without_redis(REDIS_URL=None), DEBUG=False):
        assert [m.id for m in check_shared_state_redis(None)] == ["secure_ws.W032"]


@pytest.mark.parametrize(
    ("secure_ws", "layers", "debug"),
    [
        ({}, layer(SENTINEL), False),  # follows the channel layer
        ({"REDIS_HOST": SENTINEL}, IN_MEMORY, False),
        ({"REDIS_URL": "redis://127.0.0.1:6379/0"}, IN_MEMORY, False),
        ({}, IN_MEMORY, True),
    ],
)
def test_a_shared_redis_or_debug_is_quiet(
    secure_ws: dict[str, Any], layers: dict[str, Any], debug: bool
) -> None:
    with override_settings(
        SECURE_WS=without_redis(**secure_ws), CHANNEL_LAYERS=layers, DEBUG=debug
    ):
        assert check_shared_state_redis(None) == []


@pytest.mark.parametrize(
    ("secure_ws", "layers"),
    [
        ({"REDIS_HOST": "redis://:pw@cache.internal:6379/0"}, IN_MEMORY),
        ({"REDIS_HOST": ("10.0.0.5", 6379)}, IN_MEMORY),
        ({"REDIS_HOST": SENTINEL}, IN_MEMORY),
        ({}, layer({**SENTINEL, "password": "pw"})),  # checks.py cannot read this one
    ],
)
def test_a_plain_remote_shared_state_redis_is_a_warning(
    secure_ws: dict[str, Any], layers: dict[str, Any]
) -> None:
    with override_settings(SECURE_WS=without_redis(**secure_ws), CHANNEL_LAYERS=layers):
        messages = check_shared_state_redis_transport(None)
    assert [m.id for m in messages] == ["secure_ws.W031"]
    assert "pw" not in messages[0].msg


@pytest.mark.parametrize(
    ("secure_ws", "layers"),
    [
        ({"REDIS_HOST": "rediss://:pw@cache.internal:6380/0"}, IN_MEMORY),
        ({"REDIS_HOST": {**SENTINEL, "ssl": True}}, IN_MEMORY),
        ({"REDIS_HOST": {"sentinels": [("127.0.0.1", 26379)], "master_name": "m"}}, IN_MEMORY),
        ({"REDIS_HOST": ("localhost", 6379)}, IN_MEMORY),
        ({}, layer("redis://10.0.0.5:6379/0")),  # secure_ws.checks reports that one
    ],
)
def test_tls_or_loopback_shared_state_redis_is_quiet(
    secure_ws: dict[str, Any], layers: dict[str, Any]
) -> None:
    with override_settings(SECURE_WS=without_redis(**secure_ws), CHANNEL_LAYERS=layers):
        assert check_shared_state_redis_transport(None) == []
