"""The user-state cache: no database on a hit, invalidated across processes via Redis."""

from __future__ import annotations

from typing import Any

import pytest
from channels.db import database_sync_to_async

from secure_ws.gate import userstate
from secure_ws.state import key
from tests.gate.conftest import set_gate

pytestmark = pytest.mark.usefixtures("demo_users")


async def test_hit_needs_no_database(demo_users: dict[str, Any], loads: list[str]) -> None:
    alice_id = str(demo_users["alice"].pk)
    first = await userstate.get_user_state(alice_id)
    second = await userstate.get_user_state(alice_id)
    assert first.username == second.username == "alice"
    assert first is not second  # each connection gets its own instance
    assert loads == [alice_id]


async def test_another_process_invalidation_is_seen_at_once(
    demo_users: dict[str, Any], loads: list[str], redis_client: Any
) -> None:
    alice_id = str(demo_users["alice"].pk)
    await userstate.get_user_state(alice_id)
    # What invalidate_user does on another process: move the generation in Redis.
    redis_client.incr(key("usergen", alice_id))
    redis_client.expire(key("usergen", alice_id), 60)
    await userstate.get_user_state(alice_id)
    assert loads == [alice_id, alice_id]


async def test_entry_expires_after_user_cache_ttl(
    demo_users: dict[str, Any], loads: list[str], settings: Any
) -> None:
    set_gate(settings, USER_CACHE_TTL=0)
    alice_id = str(demo_users["alice"].pk)
    await userstate.get_user_state(alice_id)
    await userstate.get_user_state(alice_id)
    assert loads == [alice_id, alice_id]


async def test_async_invalidation_reaches_the_cache(
    demo_users: dict[str, Any], loads: list[str], redis_client: Any
) -> None:
    alice_id = str(demo_users["alice"].pk)
    await userstate.get_user_state(alice_id)
    # demo_seed's saves may already have moved the generation (revocation receivers).
    before = int(redis_client.get(key("usergen", alice_id)) or 0)
    await userstate.invalidate_user(alice_id)
    assert int(redis_client.get(key("usergen", alice_id))) == before + 1
    await userstate.get_user_state(alice_id)
    assert len(loads) == 2


async def test_unknown_user_is_none(loads: list[str]) -> None:
    assert await userstate.get_user_state("999999") is None


async def test_in_process_invalidation_without_redis(
    demo_users: dict[str, Any], loads: list[str], settings: Any
) -> None:
    set_gate(settings, REDIS_URL=None)
    alice_id = str(demo_users["alice"].pk)
    await userstate.get_user_state(alice_id)
    await database_sync_to_async(userstate.invalidate_user_sync)(alice_id)
    await userstate.get_user_state(alice_id)
    assert len(loads) == 2


async def test_unreachable_redis_fails_closed(demo_users: dict[str, Any], settings: Any) -> None:
    from secure_ws.exceptions import BackendUnavailable

    set_gate(settings, REDIS_URL="redis://127.0.0.1:1/0")
    with pytest.raises(BackendUnavailable):
        await userstate.get_user_state(str(demo_users["alice"].pk))
