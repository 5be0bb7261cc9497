"""The audit database goes down under a real daphne: nothing is lost, serving goes on.

The daphne process reaches its audit tables through a TCP proxy owned by the test. Cutting
the proxy is a real outage (connections refused, open sockets reset); bringing it back must
get every buffered record written, and clients must not notice anything in between.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.db.models import Sum
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from secure_ws.audit.models import ConnectionRecord
from secure_ws.codes import APP_SUBPROTOCOL
from tests.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.e2e]

HANG_GUARD = 20


async def open_ws(server: Any, token: str, origin: str | None = None) -> ClientConnection:
    return await connect(
        server.ws_url + "/ws/files/",
        origin=origin or server.origin,  # type: ignore[arg-type]
        subprotocols=[APP_SUBPROTOCOL, f"bearer.{token}"],  # type: ignore[list-item]
        proxy=None,
        open_timeout=HANG_GUARD,
    )


async def ping(conn: ClientConnection) -> str:
    await conn.send(json.dumps({"type": "ping", "id": "p"}))
    return str(json.loads(await asyncio.wait_for(conn.recv(), HANG_GUARD))["type"])


def accounted() -> int:
    return int(ConnectionRecord.objects.aggregate(n=Sum("count"))["n"] or 0)


def wait_until(predicate: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + HANG_GUARD
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_audit_database_outage_loses_nothing_and_the_server_keeps_serving(
    demo_users: dict[str, Any], daphne_server: Callable[..., Any], token_for: Callable[..., str]
) -> None:
    from django.db import connection

    db = connection.settings_dict
    proxy = TcpProxy(int(db["PORT"] or 5432))
    proxy.restore()
    server = daphne_server(
        settings_module="tests.audit.outage_settings",
        env={"AUDIT_DB_PROXY_PORT": str(proxy.port)},
    )
    token = token_for(demo_users["alice"])
    loop = asyncio.new_event_loop()
    run = loop.run_until_complete
    try:
        first = run(open_ws(server, token))
        assert run(ping(first)) == "pong"
        assert wait_until(lambda: accounted() == 1)

        proxy.cut()
        during: list[ClientConnection] = [run(open_ws(server, token)) for _ in range(5)]
        assert [run(ping(conn)) for conn in [first, *during]] == ["pong"] * 6
        for _ in range(3):
            with pytest.raises(InvalidStatus):
                run(open_ws(server, token, origin="https://evil.example"))
        for conn in during:
            run(conn.close())
        assert wait_until(lambda: "audit database write failed" in server.log())
        assert run(ping(first)) == "pong"
        assert accounted() == 1

        proxy.restore()
        assert wait_until(lambda: accounted() == 1 + 5 + 3)
        closed = ConnectionRecord.objects.filter(outcome="accepted", closed_at__isnull=False)
        assert wait_until(lambda: closed.count() == 5)
        run(first.close())
        assert wait_until(lambda: closed.count() == 6)
        assert accounted() == 9
    finally:
        proxy.cut()
        loop.close()
