"""Revocation: sid claims, logout, deactivation and password change kick the right connections.

In-process tests register stand-in connections in this process's connection registry and
hear revocations through the real Redis pub/sub; the last tests run two real server
processes (daphne, then uvicorn: ``servers`` marker) and close connections held by either
of them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any
from unittest import mock

import pytest
import redis
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import OperationalError, connections, transaction
from django.test import Client, override_settings
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from secure_ws.codes import APP_SUBPROTOCOL, CloseCode, Reason
from secure_ws.exceptions import BackendUnavailable
from secure_ws.sessions.revocation import (
    SESSION_CLAIM,
    clear_session_cache,
    is_session_revoked,
)
from secure_ws.state import close_redis, key
from tests.conftest import DEMO_PASSWORD
from tests.consumer_helpers import watch

#: What the registry asks of a revoked connection.
REVOKED = (CloseCode.FORBIDDEN, Reason.REVOKED)

#: Guards against hangs only; no test asserts how fast anything is.
HANG_GUARD = 15


def in_thread(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``sync_to_async`` that closes the worker thread's database connection afterwards.

    Otherwise the thread keeps a session open and the test database cannot be dropped.
    """

    def closing(*args: Any) -> Any:
        try:
            return fn(*args)
        finally:
            connections.close_all()

    return sync_to_async(closing)


def sid_of(refresh: str) -> str:
    return str(RefreshToken(refresh)[SESSION_CLAIM])


def obtain_pair(client: Client, username: str) -> dict[str, str]:
    response = client.post(
        "/api/token/", {"username": username, "password": DEMO_PASSWORD}, secure=True
    )
    assert response.status_code == 200, response.content
    return dict(response.json())


def logout(client: Client, refresh: str) -> int:
    return int(client.post("/api/token/blacklist/", {"refresh": refresh}, secure=True).status_code)


# -- sid claims -------------------------------------------------------------------------


def test_login_puts_one_session_id_in_the_refresh_and_its_access_tokens(
    demo_users: dict[str, Any],
) -> None:
    client = Client()
    pair = obtain_pair(client, "alice")
    refresh = RefreshToken(pair["refresh"])
    sid = refresh[SESSION_CLAIM]
    assert isinstance(sid, str)
    assert len(sid) == 32
    assert AccessToken(pair["access"])[SESSION_CLAIM] == sid

    rotated = client.post("/api/token/refresh/", {"refresh": pair["refresh"]}, secure=True).json()
    assert AccessToken(rotated["access"])[SESSION_CLAIM] == sid
    assert RefreshToken(rotated["refresh"])[SESSION_CLAIM] == sid
    # A second login is a second session.
    assert RefreshToken(obtain_pair(client, "alice")["refresh"])[SESSION_CLAIM] != sid


# -- logout ------------------------------------------------------------------------------


async def test_logout_revokes_that_session_only_and_kicks_its_group(
    demo_users: dict[str, Any], redis_client: redis.Redis
) -> None:
    client = Client()
    mine = await in_thread(obtain_pair)(client, "alice")
    other = await in_thread(obtain_pair)(client, "alice")
    sid = await in_thread(sid_of)(mine["refresh"])
    other_sid = await in_thread(sid_of)(other["refresh"])
    kicked = await watch(session_id=sid)
    spared = await watch(session_id=other_sid)
    try:
        assert await in_thread(logout)(client, mine["refresh"]) == 200
        assert await kicked.ended() == REVOKED
        assert await spared.ended(wait=0.5) is None
        assert await is_session_revoked(sid) is True
        assert await is_session_revoked(other_sid) is False
        ttl = redis_client.ttl(key("revoked_sid", sid))
        lifetime = settings.SIMPLE_JWT["REFRESH_TOKEN_LIFETIME"]
        assert 0 < ttl <= int(lifetime.total_seconds()) + 3600
    finally:
        await close_redis()


def test_refresh_rotation_does_not_revoke_the_session(demo_users: dict[str, Any]) -> None:
    from secure_ws.sessions.models import RevokedSession

    client = Client()
    pair = obtain_pair(client, "alice")
    assert (
        client.post("/api/token/refresh/", {"refresh": pair["refresh"]}, secure=True).status_code
        == 200
    )
    assert not RevokedSession.objects.exists()


async def test_without_redis_the_database_answers(demo_users: dict[str, Any]) -> None:
    with override_settings(SECURE_WS={**settings.SECURE_WS, "REDIS_URL": None}):
        client = Client()
        pair = await in_thread(obtain_pair)(client, "bob")
        sid = await in_thread(sid_of)(pair["refresh"])
        assert await is_session_revoked(sid) is False
        assert await in_thread(logout)(client, pair["refresh"]) == 200
        clear_session_cache()
        assert await is_session_revoked(sid) is True


async def test_unknown_state_fails_closed(transactional_db: None) -> None:
    with override_settings(SECURE_WS={**settings.SECURE_WS, "REDIS_URL": "redis://127.0.0.1:1/0"}):
        with pytest.raises(BackendUnavailable):
            await is_session_revoked("a" * 32)
        await close_redis()
    with (
        override_settings(SECURE_WS={**settings.SECURE_WS, "REDIS_URL": None}),
        mock.patch(
            "secure_ws.sessions.revocation._revoked_in_database",
            side_effect=OperationalError("down"),
        ),
        pytest.raises(BackendUnavailable),
    ):
        await is_session_revoked("b" * 32)


# -- users -------------------------------------------------------------------------------


@pytest.mark.parametrize("change", ["deactivate", "password"])
async def test_deactivation_or_password_change_kicks_the_user_everywhere(
    demo_users: dict[str, Any], change: str
) -> None:
    alice, bob = demo_users["alice"], demo_users["bob"]
    kicked = await watch(user_id=alice.pk)
    spared = await watch(user_id=bob.pk)
    try:
        with mock.patch("secure_ws.sessions.revocation.invalidate_user_sync") as invalidate:

            def apply() -> None:
                if change == "deactivate":
                    alice.is_active = False
                else:
                    alice.set_password("a-new-password-456")
                alice.save()

            await in_thread(apply)()
            assert await kicked.ended() == REVOKED
        invalidate.assert_called_once_with(alice.pk)
        assert await spared.ended(wait=0.5) is None
    finally:
        await close_redis()


async def test_unrelated_saves_and_rolled_back_changes_kick_nobody(
    demo_users: dict[str, Any],
) -> None:
    alice = demo_users["alice"]
    watcher = await watch(user_id=alice.pk)
    try:

        def edits() -> None:
            alice.first_name = "Alice"
            alice.save()
            alice.save(update_fields=["last_login"])
            try:
                with transaction.atomic():
                    alice.is_active = False
                    alice.save()
                    raise RuntimeError("roll back")
            except RuntimeError:
                alice.is_active = True

        await in_thread(edits)()
        assert await watcher.ended(wait=1.0) is None
    finally:
        await close_redis()


def test_invalidation_reaches_the_shared_user_state(
    demo_users: dict[str, Any], redis_client: redis.Redis
) -> None:
    from secure_ws.gate.userstate import _generation_key

    carol = demo_users["carol"]
    before = redis_client.get(_generation_key(str(carol.pk)))
    carol.is_active = False
    carol.save()
    after = redis_client.get(_generation_key(str(carol.pk)))
    assert int(after or 0) == int(before or 0) + 1


# -- across two real daphne processes -------------------------------------------------


async def open_ws(server: Any, token: str) -> ClientConnection:
    return await connect(
        server.ws_url + "/ws/files/",
        origin=server.origin,
        subprotocols=[APP_SUBPROTOCOL, f"bearer.{token}"],  # type: ignore[list-item]
        proxy=None,
        open_timeout=HANG_GUARD,
    )


async def closed_with(conn: ClientConnection) -> tuple[int | None, list[dict[str, Any]]]:
    """Read until the server closes; return the close code and the frames seen."""
    frames: list[dict[str, Any]] = []
    try:
        while True:
            frames.append(json.loads(await asyncio.wait_for(conn.recv(), HANG_GUARD)))
    except ConnectionClosed:
        pass
    return (conn.close_code, frames)


async def still_open(conn: ClientConnection) -> bool:
    await conn.send(json.dumps({"type": "ping", "id": "p"}))
    while True:
        frame = json.loads(await asyncio.wait_for(conn.recv(), HANG_GUARD))
        if frame.get("id") == "p":
            return bool(frame["type"] == "pong")


@pytest.mark.e2e
@pytest.mark.servers
async def test_logout_closes_that_sessions_connections_on_both_processes(
    demo_users: dict[str, Any], asgi_server: Callable[..., Any]
) -> None:
    first, second = asgi_server(), asgi_server()
    client = Client()
    doomed = await in_thread(obtain_pair)(client, "alice")
    kept = await in_thread(obtain_pair)(client, "alice")
    on_first = await open_ws(first, doomed["access"])
    on_second = await open_ws(second, doomed["access"])
    survivor = await open_ws(second, kept["access"])
    try:
        assert await in_thread(logout)(client, doomed["refresh"]) == 200
        for conn in (on_first, on_second):
            code, frames = await closed_with(conn)
            assert code == CloseCode.FORBIDDEN
            assert frames[-1]["type"] == "error"
            assert frames[-1]["payload"]["code"] == Reason.REVOKED
        assert await still_open(survivor)
        with pytest.raises(InvalidStatus) as refused:
            await open_ws(first, doomed["access"])
        assert refused.value.response.status_code == 403
        fresh = await open_ws(first, kept["access"])
        assert await still_open(fresh)
        await fresh.close()
    finally:
        for conn in (on_first, on_second, survivor):
            await conn.close()


@pytest.mark.e2e
@pytest.mark.servers
async def test_deactivating_a_user_closes_their_connections_on_both_processes(
    demo_users: dict[str, Any], asgi_server: Callable[..., Any], token_for: Callable[..., str]
) -> None:
    first, second = asgi_server(), asgi_server()
    alice, bob = demo_users["alice"], demo_users["bob"]
    alice_first = await open_ws(first, token_for(alice))
    alice_second = await open_ws(second, token_for(alice))
    bob_second = await open_ws(second, token_for(bob))
    try:

        def deactivate() -> None:
            alice.is_active = False
            alice.save()

        await in_thread(deactivate)()
        for conn in (alice_first, alice_second):
            code, _ = await closed_with(conn)
            assert code == CloseCode.FORBIDDEN
        assert await still_open(bob_second)
        with pytest.raises(InvalidStatus):
            await open_ws(first, token_for(alice))
    finally:
        for conn in (alice_first, alice_second, bob_second):
            await conn.close()


@pytest.mark.e2e
@pytest.mark.servers
def test_admin_disconnect_closes_a_connection_held_by_a_server_process(
    demo_users: dict[str, Any], asgi_server: Callable[..., Any], token_for: Callable[..., str]
) -> None:
    import time

    from secure_ws.audit.admin import ADMIN_DISCONNECT_KIND
    from secure_ws.audit.models import ConnectionRecord, SecurityEvent

    server = asgi_server()
    loop = asyncio.new_event_loop()
    try:
        conn = loop.run_until_complete(open_ws(server, token_for(demo_users["carol"])))
        assert loop.run_until_complete(still_open(conn))
        live = ConnectionRecord.objects.filter(
            user=demo_users["carol"], outcome="accepted", closed_at__isnull=True
        )  # no channel name needed: Disconnect kicks by connection id
        deadline = time.monotonic() + HANG_GUARD
        while not live.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        record = live.get()

        admin = Client()
        admin.force_login(demo_users["admin"])
        response = admin.post(
            "/admin/secure_ws/connectionrecord/",
            {"action": "disconnect", "_selected_action": [record.pk]},
            secure=True,
        )
        assert response.status_code == 302
        code, frames = loop.run_until_complete(closed_with(conn))
        assert code == CloseCode.FORBIDDEN
        assert frames[-1]["payload"]["code"] == Reason.REVOKED
        event = SecurityEvent.objects.get(record=record, kind=ADMIN_DISCONNECT_KIND)
        assert "admin" in event.detail
    finally:
        loop.close()
