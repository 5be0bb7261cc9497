"""The per-process connection registry and its messages, and delivery without Redis."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.test import override_settings

from secure_ws.codes import CloseCode, Reason
from secure_ws.sessions.pubsub import channel_name, publish_sync, send_user_event
from secure_ws.sessions.registry import MAX_MESSAGE_BYTES, SessionMessage, get_registry
from secure_ws.sessions.revocation import kick_connection, kick_session, kick_user
from secure_ws.state import close_redis
from tests.consumer_helpers import RecordingConnection, watch

REVOKED = (CloseCode.FORBIDDEN, Reason.REVOKED)


@pytest.fixture(autouse=True)
async def _close_shared_redis() -> AsyncIterator[None]:
    yield
    await close_redis()


# -- the indexes ----------------------------------------------------------------------------


async def test_a_connection_is_found_by_user_session_and_connection_id() -> None:
    registry = get_registry()
    conn = RecordingConnection(user_id=7, session_id="s-1")
    registry.add(conn)
    cid = conn.connection.connection_id
    assert registry.matches("user", "7") == [conn]
    assert registry.matches("session", "s-1") == [conn]
    assert registry.matches("connection", cid) == [conn]
    assert registry.matches("user", "8") == []
    assert conn in registry
    assert len(registry) == 1
    registry.remove(conn)
    assert len(registry) == 0
    assert registry.matches("user", "7") == registry.matches("session", "s-1") == []


async def test_removal_leaves_no_empty_index_entries_behind() -> None:
    registry = get_registry()
    conns = [RecordingConnection(user_id=n % 3, session_id=f"s-{n}") for n in range(30)]
    for conn in conns:
        registry.add(conn)
    for conn in conns:
        registry.remove(conn)
    assert (registry._by_connection, registry._by_user, registry._by_session) == ({}, {}, {})


async def test_adding_twice_files_a_connection_once_and_a_stranger_cannot_remove_it() -> None:
    registry = get_registry()
    conn = RecordingConnection(user_id=1)
    registry.add(conn)
    registry.add(conn)
    assert registry.matches("user", "1") == [conn]
    stranger = RecordingConnection(user_id=1)
    stranger.connection.connection_id = conn.connection.connection_id
    registry.remove(stranger)
    assert registry.matches("user", "1") == [conn]
    registry.remove(conn)


async def test_moving_a_connection_to_another_session_refiles_it() -> None:
    registry = get_registry()
    conn = RecordingConnection(user_id=1, session_id="old")
    registry.add(conn)
    registry.move_session(conn, "new")
    assert registry.matches("session", "old") == []
    assert registry.matches("session", "new") == [conn]
    registry.remove(conn)
    assert registry.matches("session", "new") == []


# -- applying messages ----------------------------------------------------------------------


async def test_each_kind_closes_exactly_its_matches_with_4403_revoked() -> None:
    registry = get_registry()
    alice_1 = RecordingConnection(user_id=1, session_id="a1")
    alice_2 = RecordingConnection(user_id=1, session_id="a2")
    bob = RecordingConnection(user_id=2, session_id="b1")
    for conn in (alice_1, alice_2, bob):
        registry.add(conn)
    assert registry.apply(SessionMessage("session", "a2")) == 1
    assert await alice_2.ended() == REVOKED
    assert registry.apply(SessionMessage("connection", bob.connection.connection_id)) == 1
    assert await bob.ended() == REVOKED
    assert registry.apply(SessionMessage("user", "1")) == 2
    assert await alice_1.ended() == REVOKED
    assert await alice_2.ended() == REVOKED
    assert await bob.ended(wait=0.2) is None
    for conn in (alice_1, alice_2, bob):
        registry.remove(conn)


async def test_a_user_event_is_delivered_to_that_users_connections_only() -> None:
    registry = get_registry()
    mine, theirs = RecordingConnection(user_id=1), RecordingConnection(user_id=2)
    registry.add(mine)
    registry.add(theirs)
    event = {"type": "secure_ws.folder_access", "folder": "team"}
    assert registry.apply(SessionMessage("user_event", "1", "", event)) == 1
    assert mine.events == [event]
    assert mine.events[0] is not event  # each connection gets its own copy
    assert theirs.events == []
    assert await mine.ended(wait=0.1) is None
    registry.remove(mine)
    registry.remove(theirs)


async def test_losing_the_subscription_closes_every_connection_1013() -> None:
    registry = get_registry()
    conns = [RecordingConnection(user_id=n) for n in range(3)]
    for conn in conns:
        registry.add(conn)
    assert registry.close_all(CloseCode.TRY_AGAIN_LATER, Reason.BACKEND_UNAVAILABLE) == 3
    for conn in conns:
        assert await conn.ended() == (CloseCode.TRY_AGAIN_LATER, Reason.BACKEND_UNAVAILABLE)
        registry.remove(conn)


# -- the wire form --------------------------------------------------------------------------


def test_a_message_survives_its_wire_form() -> None:
    for message in (
        SessionMessage("user", "42", "user_changed"),
        SessionMessage("session", "f" * 32),
        SessionMessage("user_event", "7", "", {"type": "x.y", "folder": "team"}),
    ):
        assert SessionMessage.decode(message.encode()) == message
        assert SessionMessage.decode(message.encode().encode()) == message


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b"[]",
        b'{"kind": "everyone", "id": "1"}',
        b'{"kind": "user"}',
        b'{"kind": "user", "id": ""}',
        b'{"kind": "user", "id": 7}',
        b'{"kind": "user", "id": "1", "reason": 5}',
        json.dumps({"kind": "user", "id": "x" * 200}).encode(),
        b'{"kind": "user_event", "id": "1"}',
        b'{"kind": "user_event", "id": "1", "event": {"type": 3}}',
        b'{"kind": "user", "id": "1", "pad": "' + b"x" * MAX_MESSAGE_BYTES + b'"}',
        b"\xff\xfe",
    ],
)
def test_a_malformed_message_is_dropped(data: bytes) -> None:
    assert SessionMessage.decode(data) is None


def test_a_revocation_carries_no_event_even_if_one_is_published() -> None:
    data = json.dumps({"kind": "user", "id": "1", "event": {"type": "sample.event"}})
    message = SessionMessage.decode(data)
    assert message is not None
    assert message.event is None


# -- delivery -------------------------------------------------------------------------------


async def test_without_redis_kicks_and_events_are_delivered_in_process() -> None:
    with override_settings(SECURE_WS={**settings.SECURE_WS, "REDIS_URL": None}):
        by_user, by_session, by_id = (
            await watch(user_id=5),
            await watch(session_id="s-5"),
            await watch(user_id=6),
        )
        await kick_user(5)
        await kick_session("s-5")
        await kick_connection(by_id.connection.connection_id)
        for conn in (by_user, by_session, by_id):
            assert await conn.ended() == REVOKED
        await send_user_event(5, {"type": "sample.event"})
        assert by_user.events == [{"type": "sample.event"}]
        # From another thread (a sync view or signal receiver): through the loop, thread-safe.
        late = await watch(user_id=9)
        await sync_to_async(publish_sync)(SessionMessage("user", "9"))
        assert await late.ended() == REVOKED
        for conn in (by_user, by_session, by_id, late):
            get_registry().remove(conn)


async def test_a_malformed_publication_is_dropped_and_the_subscription_stays_up(
    redis_client: Any,
) -> None:
    conn = await watch(user_id=11)
    redis_client.publish(channel_name(), b"garbage")
    redis_client.publish(channel_name(), b'{"kind": "user", "id": 11}')
    await kick_user(11)
    assert await conn.ended() == REVOKED
    get_registry().remove(conn)


async def test_a_changed_key_prefix_moves_the_subscription_to_the_new_channel() -> None:
    before = await watch(user_id=12)
    prefix = f"{settings.SECURE_WS['KEY_PREFIX']}-moved"
    with override_settings(SECURE_WS={**settings.SECURE_WS, "KEY_PREFIX": prefix}):
        after = await watch(user_id=12)
        assert channel_name().startswith(prefix)
        await kick_user(12)
        assert await after.ended() == REVOKED
        assert await before.ended() == REVOKED  # one registry: both are this process's
    for conn in (before, after):
        get_registry().remove(conn)
