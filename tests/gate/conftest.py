"""Fixtures for the gate's tests: isolated state per test and a communicator factory."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import connections

from secure_ws.codes import APP_SUBPROTOCOL

ORIGIN = "https://app.example.com"
HOST = "app.example.com"


@pytest.fixture(autouse=True)
async def gate_state(settings: Any) -> AsyncIterator[dict[str, Any]]:
    """Give each test its own Redis key prefix and empty in-process state."""
    from secure_ws.gate import caps, throttle
    from secure_ws.gate.tickets import _local_tickets
    from secure_ws.state import close_redis

    settings.ALLOWED_HOSTS = [HOST, "127.0.0.1", "localhost", "testserver"]
    settings.SECURE_WS = {
        **settings.SECURE_WS,
        "KEY_PREFIX": f"{settings.SECURE_WS['KEY_PREFIX']}-{uuid.uuid4().hex[:8]}",
        "ALLOWED_ORIGINS": [ORIGIN, "https://*.example.org"],
        "HANDSHAKE_RATE": 6000,
        "HANDSHAKE_BURST": 1000,
        "REQUIRE_TLS": False,
    }
    throttle._local_buckets.clear()
    caps._local_slots.clear()
    _local_tickets.clear()
    yield settings.SECURE_WS
    await close_redis()
    # channels' communicator disables close_old_connections while it runs the app, so the
    # sync worker thread keeps its connection open; close it or the test DB cannot drop.
    await sync_to_async(connections.close_all)()


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The user ids the user-state cache loads from the database, in order."""
    from secure_ws.gate import userstate

    seen: list[str] = []
    original = userstate._load_user_async

    async def counting(field: str, user_id: str) -> Any:
        seen.append(user_id)
        return await original(field, user_id)

    monkeypatch.setattr(userstate, "_load_user_async", counting)
    return seen


def set_gate(settings: Any, **values: Any) -> None:
    """Override some ``SECURE_WS`` keys for one test."""
    settings.SECURE_WS = {**settings.SECURE_WS, **values}


def build_headers(
    origin: str | None = ORIGIN, host: str | None = HOST, **extra: str | bytes
) -> list[tuple[bytes, bytes]]:
    """Handshake headers as an ASGI server hands them over."""
    headers: list[tuple[bytes, bytes]] = []
    if host is not None:
        headers.append((b"host", host.encode()))
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    headers.append((b"sec-websocket-version", b"13"))
    for name, value in extra.items():
        raw = value if isinstance(value, bytes) else value.encode()
        headers.append((name.replace("_", "-").encode(), raw))
    return headers


@pytest.fixture
def communicator() -> Callable[..., WebsocketCommunicator]:
    """Build a WebsocketCommunicator with a client address and chosen headers."""

    def build(
        application: Any,
        path: str = "/ws/info/",
        headers: list[tuple[bytes, bytes]] | None = None,
        subprotocols: list[str] | None = None,
        client: tuple[str, int] = ("203.0.113.7", 50000),
        **scope: Any,
    ) -> WebsocketCommunicator:
        comm = WebsocketCommunicator(
            application,
            path,
            headers=build_headers() if headers is None else headers,
            subprotocols=[APP_SUBPROTOCOL] if subprotocols is None else subprotocols,
        )
        comm.scope["client"] = list(client)
        comm.scope.update(scope)
        return comm

    return build
