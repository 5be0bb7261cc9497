"""Fixtures of the reliability tests: a private redis-server, a database proxy, clients.

These tests break the backends on purpose, so they never touch the machine's shared
Redis (6379) or PostgreSQL (5432): Redis is a private ``redis-server`` on a free port, and
the database is reached through :class:`TcpProxy`, which the test can cut and restore.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from secure_ws.codes import APP_SUBPROTOCOL
from tests.conftest import free_port
from tests.tcp_proxy import TcpProxy


class PrivateRedis:
    """A ``redis-server`` on its own port that a test may stop and start again."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        self.binary = binary
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--daemonize", "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("private redis-server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    """A private Redis for one test (stopped afterwards, whatever the test did to it)."""
    server = PrivateRedis()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def db_proxy() -> Iterator[TcpProxy]:
    """A cuttable proxy in front of the test PostgreSQL."""
    from django.db import connection

    proxy = TcpProxy(int(connection.settings_dict["PORT"] or 5432))
    proxy.restore()
    yield proxy
    proxy.cut()


async def open_client(
    server: Any,
    token: str,
    *,
    forwarded_for: str | None = None,
    path: str = "/ws/files/",
) -> ClientConnection:
    """Open an authenticated client on ``server`` (bearer subprotocol, allowed Origin)."""
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    return await connect(
        server.ws_url + path,
        subprotocols=[APP_SUBPROTOCOL, f"bearer.{token}"],  # type: ignore[list-item]
        origin=server.origin,  # type: ignore[arg-type]
        additional_headers=headers,
        proxy=None,
        open_timeout=10,
        close_timeout=5,
    )


async def ping(conn: ClientConnection, deadline: float = 10) -> float:
    """Send ``ping`` and wait for its ``pong``; return the round trip in seconds."""
    started = time.perf_counter()
    await conn.send(json.dumps({"type": "ping", "id": "p", "payload": {}}))
    async with asyncio.timeout(deadline):
        while True:
            reply = json.loads(await conn.recv())
            if reply["type"] == "pong":
                return time.perf_counter() - started


def p99(values: list[float]) -> float:
    """The 99th percentile (nearest rank), in milliseconds."""
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
