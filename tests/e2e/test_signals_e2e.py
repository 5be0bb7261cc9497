"""Signal receivers that raise never decide a connection: real daphne, real client."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from secure_ws.codes import APP_SUBPROTOCOL

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("demo_users")]

PATH = "/ws/files/"


def wait_for_log(server: Any, needle: str, count: int = 1) -> str:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        log = str(server.log())
        if log.count(needle) >= count:
            return log
        time.sleep(0.05)
    raise AssertionError(f"{needle!r} not logged {count} time(s):\n{server.log()}")


async def test_raising_receivers_change_neither_a_refusal_nor_an_accepted_connection(
    daphne_server: Callable[..., Any], demo_users: dict[str, Any], token_for: Any
) -> None:
    server = daphne_server(settings_module="tests.e2e.raising_receivers_settings")
    url = server.ws_url + PATH

    with pytest.raises(InvalidStatus) as refused:
        await connect(url, proxy=None, origin="http://evil.example", open_timeout=10)
    assert refused.value.response.status_code == 403
    wait_for_log(server, "connection_refused receiver", count=2)

    token = token_for(demo_users["alice"])
    async with connect(
        url,
        proxy=None,
        origin=server.origin,
        subprotocols=[APP_SUBPROTOCOL, f"bearer.{token}"],  # type: ignore[list-item]
        open_timeout=10,
    ) as conn:
        log = wait_for_log(server, "connection_accepted receiver", count=2)
        # Both receiver kinds ran and failed; the connection still answers and stays open.
        assert "sync_receiver_that_raises" in log
        assert "async_receiver_that_raises" in log
        for n in range(3):
            await conn.send(json.dumps({"type": "ping", "id": f"p{n}"}))
            reply = json.loads(await asyncio.wait_for(conn.recv(), 10))
            assert (reply["type"], reply["id"]) == ("pong", f"p{n}")
        await conn.send(json.dumps({"type": "no.such.type"}))
        error = json.loads(await asyncio.wait_for(conn.recv(), 10))
        assert error["payload"]["code"] == "unknown_type"
        wait_for_log(server, "security_event receiver", count=2)
        await conn.send(json.dumps({"type": "ping", "id": "after"}))
        assert json.loads(await asyncio.wait_for(conn.recv(), 10))["id"] == "after"
    wait_for_log(server, "connection_closed receiver", count=2)
