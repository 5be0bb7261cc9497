"""Gate step 6: connection caps per user and per IP, across processes through Redis."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator

from secure_ws import SecureJsonWebsocketConsumer
from secure_ws.codes import Reason
from secure_ws.connection import get_connection_info
from secure_ws.exceptions import Refused
from secure_ws.gate.caps import ConnectionCapMiddleware, acquire_slot
from secure_ws.state import key
from secure_ws.testing import access_token_for
from tests.e2e.gate_asgi import info_consumer
from tests.gate.conftest import set_gate


async def test_user_cap_counts_across_callers_and_release_frees_the_slot() -> None:
    first = await acquire_slot("c1", 7, "198.51.100.1", 2, 10, 60)
    await acquire_slot("c2", 7, "198.51.100.2", 2, 10, 60)
    with pytest.raises(Refused) as caught:
        await acquire_slot("c3", 7, "198.51.100.3", 2, 10, 60)
    assert caught.value.reason is Reason.USER_CONNECTION_LIMIT
    await first.release()
    await acquire_slot("c4", 7, "198.51.100.4", 2, 10, 60)


async def test_ip_cap_counts_every_user_of_one_address() -> None:
    await acquire_slot("c1", 1, "198.51.100.9", 10, 2, 60)
    await acquire_slot("c2", 2, "198.51.100.9", 10, 2, 60)
    with pytest.raises(Refused) as caught:
        await acquire_slot("c3", 3, "198.51.100.9", 10, 2, 60)
    assert caught.value.reason is Reason.IP_CONNECTION_LIMIT


async def test_refused_acquire_takes_no_slot(redis_client: Any) -> None:
    await acquire_slot("c1", 5, "198.51.100.10", 1, 10, 60)
    with pytest.raises(Refused):
        await acquire_slot("c2", 5, "198.51.100.11", 1, 10, 60)
    assert redis_client.zcard(key("caps", "ip", "198.51.100.11")) == 0


async def test_slot_of_a_crashed_process_expires_by_itself(redis_client: Any) -> None:
    await acquire_slot("crashed", 11, "198.51.100.12", 1, 10, 1)  # never released
    assert redis_client.zcard(key("caps", "user", 11)) == 1
    deadline = time.monotonic() + 5
    while True:
        try:
            await acquire_slot("next", 11, "198.51.100.12", 1, 10, 1)
            break
        except Refused:
            assert time.monotonic() < deadline, "the crashed slot never expired"
            await asyncio.sleep(0.2)


async def test_heartbeat_keeps_a_live_slot_beyond_its_ttl(redis_client: Any) -> None:
    slot = await acquire_slot("live", 12, "198.51.100.13", 1, 10, 1)
    slot.start_heartbeat()
    # Not a wait for an event: the slot's Redis TTL (1 s) passing is the behaviour under test.
    await asyncio.sleep(1.6)
    with pytest.raises(Refused):
        await acquire_slot("other", 12, "198.51.100.13", 1, 10, 1)
    await slot.release()
    assert redis_client.zcard(key("caps", "user", 12)) == 0


async def test_in_process_caps_without_redis(settings: Any) -> None:
    set_gate(settings, REDIS_URL=None)
    slot = await acquire_slot("c1", 3, "198.51.100.14", 1, 10, 60)
    with pytest.raises(Refused):
        await acquire_slot("c2", 3, "198.51.100.14", 1, 10, 60)
    await slot.release()
    await acquire_slot("c3", 3, "198.51.100.14", 1, 10, 60)


@pytest.mark.parametrize("redis_url", ["redis://127.0.0.1:6379/0", None])
async def test_middleware_holds_the_slot_while_open_and_releases_it(
    communicator: Any, caplog: pytest.LogCaptureFixture, settings: Any, redis_url: str | None
) -> None:
    set_gate(settings, REDIS_URL=redis_url)

    async def as_user(scope: dict[str, Any], receive: Any, send: Any) -> None:
        get_connection_info(scope).user_id = 42
        await app(scope, receive, send)

    app = ConnectionCapMiddleware(info_consumer, max_per_user=1, max_per_ip=10)
    first = communicator(as_user)
    assert (await first.connect())[0]
    second = communicator(as_user)
    with caplog.at_level(logging.WARNING):
        assert not (await second.connect())[0]
    await second.wait()
    assert f"reason={Reason.USER_CONNECTION_LIMIT.value}" in caplog.text
    await first.disconnect()
    third = communicator(as_user)
    assert (await third.connect())[0]
    await third.disconnect()


async def test_one_heartbeat_keeps_every_live_slot_and_stops_when_none_is_left(
    redis_client: Any,
) -> None:
    from secure_ws.gate.caps import _heartbeat_for_loop

    slots = [await acquire_slot(f"live{i}", 20 + i, "198.51.100.15", 1, 10, 1) for i in range(3)]
    for slot in slots:
        slot.start_heartbeat()
    # Not a wait for an event: the slot's Redis TTL (1 s) passing is the behaviour under test.
    await asyncio.sleep(1.6)
    for i in range(3):
        assert redis_client.zcard(key("caps", "user", 20 + i)) == 1
    assert redis_client.zcard(key("caps", "ip", "198.51.100.15")) == 3
    for slot in slots:
        await slot.release()
    assert _heartbeat_for_loop()._task is None
    assert redis_client.zcard(key("caps", "ip", "198.51.100.15")) == 0


class SlowToCleanUp(SecureJsonWebsocketConsumer):
    """A consumer whose clean-up (``on_close``) waits until the test lets it finish."""

    cleanup_may_finish: asyncio.Event

    async def on_close(self, code: int) -> None:
        await self.cleanup_may_finish.wait()


async def test_a_closed_socket_gives_its_slot_back_before_the_consumer_cleans_up(
    demo_users: dict[str, Any],
    secure_ws_gate: Callable[..., WebsocketCommunicator],
    settings: Any,
) -> None:
    """A client at its cap that closes and reconnects is not refused by its closed socket."""
    settings.ALLOWED_HOSTS = ["testserver"]
    settings.SECURE_WS = {
        **settings.SECURE_WS,
        "ALLOWED_ORIGINS": ["http://testserver"],
        "MAX_CONNECTIONS_PER_USER": 1,
    }
    SlowToCleanUp.cleanup_may_finish = asyncio.Event()
    token = access_token_for(demo_users["alice"])
    first = secure_ws_gate(SlowToCleanUp.as_asgi(), "/ws/slow/", token=token)
    assert (await first.connect())[0]
    await first.send_input({"type": "websocket.disconnect", "code": 1000})
    try:
        give_up = time.monotonic() + 10
        while True:
            again = secure_ws_gate(SlowToCleanUp.as_asgi(), "/ws/slow/", token=token)
            connected, _ = await again.connect()
            if connected or time.monotonic() > give_up:
                break
            await again.wait()
            await asyncio.sleep(0.05)
        assert connected, "the closed socket's slot still counted while its consumer cleaned up"
        await again.send_input({"type": "websocket.disconnect", "code": 1000})
    finally:
        SlowToCleanUp.cleanup_may_finish.set()
        await first.wait()
