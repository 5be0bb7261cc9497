"""Slow readers are bounded on daphne and on uvicorn (issue 11 item 6, issue 15).

A read member opens sockets with a tiny receive window that never read, subscribes them to
a folder and keeps sending requests the server allows (``resync`` within its own rate,
``ping`` within the message rate) for 30 s, while a write member announces uploads to that
folder; when the server drops a socket it opens another. Each ``resync``
of the seeded folder is answered with a large ``folder.state`` page, so the unread output
grows by about 90 KB a second per socket. Before ``MAX_PENDING_OUTPUT`` daphne buffered
all of it (its ``send`` never waits: the auditor measured 107 -> 244 MiB in 35 s) and never
closed those sockets; uvicorn's ``send`` waits for the socket to drain, so its memory
stayed bounded but the stalled connections stayed open, unaudited.

Asserted, on each server: the server process's RSS grows by less than
:data:`RSS_GROWTH_BOUND`; a good client's pings are all answered; every stalled socket is
closed by the server (its sends fail) and audited with close code 4429 and reason
``slow_consumer``, with a ``slow_consumer`` security event. On daphne, whose buffer grows
past half the bound before the close, the folder's events to the stalled sockets were
dropped and counted in the audit row; uvicorn's consumer waits in ``send`` instead, and
the events wait in (and are bounded by) the channel layer.

Why 40 MiB: at most ``ABUSERS`` connections are open at a time, each holding at most
``MAX_PENDING_OUTPUT`` (1 MiB) plus one page (< 100 KiB) before it is closed and its buffer
dropped, about 7 MiB in all; the rest is allocator slack and the audit records. Unbounded,
the same traffic grows daphne by several MiB a second.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from secure_ws.codes import APP_SUBPROTOCOL, CloseCode, Reason
from tests.conftest import ServerProcess, access_token_for
from tests.reliability.conftest import open_client, ping

pytestmark = [pytest.mark.e2e, pytest.mark.servers, pytest.mark.timeout(240)]

ABUSERS = 6
SPAM_SECONDS = 30.0
#: Growth of the server's resident memory the whole run may cause (see the docstring).
RSS_GROWTH_BOUND = 40 * 1024 * 1024
#: Files seeded into the folder; one page of them is about 90 KB of JSON.
SEEDED_FILES = 600
#: A 240-byte display name that JSON escapes to 720 characters (``\\u00e9`` each).
LONG_NAME = "\u00e9" * 120
RESYNC_INTERVAL = 1.1  # just below the consumer's resync_rate of 1 per second
PING_INTERVAL = 0.1  # 10 per second, half of MESSAGE_RATE
#: Guards against hangs only.
HANG_GUARD = 10.0


@pytest.fixture
def seeded_folder(demo_users: dict[str, Any]) -> str:
    """The demo folder ``team`` with many files whose names make large replies."""
    from project.filebox.models import Folder, StoredFile

    folder = Folder.objects.get(slug="team")
    StoredFile.objects.bulk_create(
        StoredFile(
            folder=folder,
            name=LONG_NAME,
            size=1024,
            content_type="application/pdf",
            sha256="0" * 64,
            file=f"filebox/team/{uuid.uuid4()}",
        )
        for _ in range(SEEDED_FILES)
    )
    return folder.slug


@pytest.fixture
def demo_server(
    asgi_server: Callable[..., ServerProcess], seeded_folder: str, tmp_path: Path
) -> ServerProcess:
    """The demo project on this test's server (the ``servers`` marker picks daphne, uvicorn)."""
    return asgi_server(env={"MEDIA_ROOT": str(tmp_path / "media")})


def rss_bytes(pid: int) -> int:
    """The process's resident set size, from ``/proc/<pid>/status``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS line")


def client_frame(text: str) -> bytes:
    """One masked text frame, as a client must send it (RFC 6455 5.3)."""
    data = text.encode()
    mask = os.urandom(4)
    length = len(data)
    header = bytes([0x81]) + (
        bytes([0x80 | length]) if length < 126 else bytes([0x80 | 126]) + length.to_bytes(2, "big")
    )
    return header + mask + bytes(byte ^ mask[i % 4] for i, byte in enumerate(data))


async def open_stalled_socket(server: ServerProcess, token: str) -> socket.socket:
    """Open a WebSocket on a socket with a tiny receive window; read only the handshake."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    try:
        await asyncio.wait_for(loop.sock_connect(sock, ("127.0.0.1", server.port)), HANG_GUARD)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            "GET /ws/files/ HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{server.port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Origin: {server.origin}\r\n"
            f"Sec-WebSocket-Protocol: {APP_SUBPROTOCOL}, bearer.{token}\r\n\r\n"
        )
        await loop.sock_sendall(sock, request.encode())
        head = b""
        while not head.endswith(b"\r\n\r\n"):  # one byte at a time: nothing past the head
            byte = await asyncio.wait_for(loop.sock_recv(sock, 1), HANG_GUARD)
            if not byte:
                raise ConnectionError("closed during the handshake")
            head += byte
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(head.split(b"\r\n", 1)[0].decode(errors="replace"))
    except BaseException:
        sock.close()
        raise
    return sock


@dataclass
class AbuserStats:
    opened: int = 0
    dropped_by_server: int = 0
    refused: int = 0


async def stalled_reader(
    server: ServerProcess, token: str, folder: str, until: float, stats: AbuserStats
) -> None:
    """Send allowed requests on never-read sockets until ``until``; reopen dropped ones."""
    loop = asyncio.get_running_loop()
    subscribe = client_frame(json.dumps({"type": "subscribe", "payload": {"folder": folder}}))
    resync = client_frame(json.dumps({"type": "resync", "payload": {"folder": folder}}))
    ping_frame = client_frame(json.dumps({"type": "ping", "payload": {}}))
    while loop.time() < until:
        try:
            sock = await open_stalled_socket(server, token)
        except (OSError, ConnectionError, TimeoutError):
            stats.refused += 1  # e.g. the user's slot not yet released: try again
            await asyncio.sleep(0.2)
            continue
        stats.opened += 1
        next_resync = 0.0
        try:
            await asyncio.wait_for(loop.sock_sendall(sock, subscribe), HANG_GUARD)
            while loop.time() < until:
                if loop.time() >= next_resync:
                    frame, next_resync = resync, loop.time() + RESYNC_INTERVAL
                else:
                    frame = ping_frame
                await asyncio.wait_for(loop.sock_sendall(sock, frame), HANG_GUARD)
                await asyncio.sleep(PING_INTERVAL)
        except (OSError, TimeoutError):
            stats.dropped_by_server += 1
        finally:
            sock.close()


async def good_client(server: ServerProcess, token: str, until: float) -> int:
    """Ping for the whole run; every ping must be answered (``ping`` raises otherwise)."""
    answered = 0
    conn = await open_client(server, token)
    try:
        while asyncio.get_running_loop().time() < until:
            await ping(conn, deadline=HANG_GUARD)
            answered += 1
            await asyncio.sleep(0.2)
    finally:
        await conn.close()
    return answered


async def publisher(server: ServerProcess, token: str, folder: str, until: float) -> int:
    """Announce an upload to ``folder`` four times a second, reading every ``ack``."""
    published = 0
    conn = await open_client(server, token)
    try:
        while asyncio.get_running_loop().time() < until:
            frame_id = uuid.uuid4().hex
            upload = {
                "folder": folder,
                "file_id": str(uuid.uuid4()),
                "name": "report.pdf",
                "size": 1,
                "content_type": "application/pdf",
                "sha256": "a" * 64,
            }
            await conn.send(json.dumps({"type": "file_upload", "id": frame_id, "payload": upload}))
            async with asyncio.timeout(HANG_GUARD):
                while json.loads(await conn.recv()).get("id") != frame_id:
                    pass
            published += 1
            await asyncio.sleep(0.25)
    finally:
        await conn.close()
    return published


async def audited_slow_consumer_closes(user_id: int, at_least: int) -> list[Any]:
    """The audit rows of the user's connections closed as slow consumers (polled)."""
    from channels.db import database_sync_to_async

    from secure_ws.audit.models import ConnectionRecord

    def rows() -> list[Any]:
        return list(
            ConnectionRecord.objects.filter(
                user_id=user_id, reason=Reason.SLOW_CONSUMER.value
            ).prefetch_related("security_events")
        )

    deadline = time.monotonic() + 20
    found = await database_sync_to_async(rows)()
    while len(found) < at_least and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        found = await database_sync_to_async(rows)()
    return found


async def test_stalled_readers_are_closed_and_the_server_stays_bounded(
    demo_server: ServerProcess,
    demo_users: dict[str, Any],
    seeded_folder: str,
) -> None:
    carol, alice = demo_users["carol"], demo_users["alice"]
    pid = demo_server.process.pid
    # Warm up what every connection shares (database connections, imports, the pool).
    warm = await open_client(demo_server, access_token_for(carol))
    await warm.send(json.dumps({"type": "resync", "payload": {"folder": seeded_folder}}))
    await asyncio.wait_for(warm.recv(), HANG_GUARD)
    await warm.close()
    baseline = rss_bytes(pid)

    loop = asyncio.get_running_loop()
    until = loop.time() + SPAM_SECONDS
    stats = [AbuserStats() for _ in range(ABUSERS)]
    token = access_token_for(carol)
    run = asyncio.gather(
        good_client(demo_server, access_token_for(alice), until),
        publisher(demo_server, access_token_for(demo_users["bob"]), seeded_folder, until),
        *(stalled_reader(demo_server, token, seeded_folder, until, s) for s in stats),
    )
    peak = baseline
    while not run.done():
        peak = max(peak, rss_bytes(pid))
        await asyncio.wait([run], timeout=0.5)
    answered = run.result()[0]
    peak = max(peak, rss_bytes(pid))
    growth = peak - baseline
    print(f"\nRSS {baseline / 2**20:.0f} -> peak {peak / 2**20:.0f} MiB; {stats}")

    assert growth < RSS_GROWTH_BOUND, f"RSS grew {growth / 2**20:.1f} MiB"
    assert answered >= SPAM_SECONDS  # about 4 a second; every one within HANG_GUARD
    assert all(s.dropped_by_server >= 1 for s in stats), stats
    closes = await audited_slow_consumer_closes(carol.pk, sum(s.dropped_by_server for s in stats))
    assert len(closes) >= sum(s.dropped_by_server for s in stats)
    for record in closes:
        assert record.close_code == int(CloseCode.RATE_LIMITED)
        assert Reason.SLOW_CONSUMER.value in {e.kind for e in record.security_events.all()}
    assert run.result()[1] >= SPAM_SECONDS  # the folder's events kept coming
    if demo_server.kind == "daphne":
        assert any("events dropped" in record.note for record in closes), [
            record.note for record in closes
        ]
    assert "Traceback" not in demo_server.log()
