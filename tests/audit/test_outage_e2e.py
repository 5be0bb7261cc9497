"""The audit database goes down under a real daphne: nothing is lost, serving goes on.

The daphne process reaches its audit tables through a TCP proxy owned by the test. Cutting
the proxy is a real outage (connections refused, open sockets reset); bringing it back must
get every buffered record written, and clients must not notice anything in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.db.models import Sum
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from secure_ws.audit.models import ConnectionRecord
from secure_ws.codes import APP_SUBPROTOCOL
from tests.conftest import free_port

pytestmark = [pytest.mark.e2e]

HANG_GUARD = 20


class TcpProxy:
    """Forward a loopback port to PostgreSQL; ``down()`` cuts it, ``up()`` restores it."""

    def __init__(self, port: int, target: tuple[str, int]) -> None:
        self.port = port
        self.target = target
        self.sockets: list[socket.socket] = []
        self.listener: socket.socket | None = None
        self.lock = threading.Lock()

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        with self.lock:
            if self.listener is not None:
                # shutdown() wakes the thread blocked in accept(); close() alone does not.
                with contextlib.suppress(OSError):
                    self.listener.shutdown(socket.SHUT_RDWR)
                self.listener.close()
                self.listener = None
            for sock in self.sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self.sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self.lock:
                self.sockets += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.close()


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
    proxy = TcpProxy(free_port(), (db["HOST"] or "127.0.0.1", int(db["PORT"] or 5432)))
    proxy.up()
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

        proxy.down()
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

        proxy.up()
        assert wait_until(lambda: accounted() == 1 + 5 + 3)
        closed = ConnectionRecord.objects.filter(outcome="accepted", closed_at__isnull=False)
        assert wait_until(lambda: closed.count() == 5)
        run(first.close())
        assert wait_until(lambda: closed.count() == 6)
        assert accounted() == 9
    finally:
        proxy.down()
        loop.close()
