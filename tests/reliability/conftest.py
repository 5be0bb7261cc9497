"""Fixtures of the reliability tests: a private redis-server, a database proxy, clients.

These tests break the backends on purpose, so they never touch the machine's shared
Redis (6379) or PostgreSQL (5432): Redis is a private ``redis-server`` on a free port, and
the database is reached through :class:`TcpProxy`, which the test can cut and restore.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from secure_ws.codes import APP_SUBPROTOCOL
from tests.conftest import free_port


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


class TcpProxy:
    """Forwards a loopback port to ``target``; :meth:`cut` drops all, :meth:`restore` resumes.

    It stands in for a database host going away: established connections are reset and
    new ones are refused until the proxy is restored.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()

    def accepts(self) -> bool:
        """Whether a new connection to the proxy port gets through right now."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        if self._listener is not None:
            # shutdown() wakes the thread blocked in accept(); close() alone would leave
            # the socket listening until that accept() returned.
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets.update({client, upstream})
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.close()


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
