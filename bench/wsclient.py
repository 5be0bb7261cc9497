"""A deliberately small WebSocket client for the load generators.

The benchmark runs server and clients on the same two cores, so the client must cost as
little CPU as possible or it becomes what is measured. This client speaks just enough
RFC 6455 for the benchmark: one HTTP upgrade request, masked text frames with a zero mask
(valid, and free to apply), unmasked server frames, automatic pong, close handshake. It is
not a general client and is never used outside ``bench/``.
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
from dataclasses import dataclass

from secure_ws.codes import APP_SUBPROTOCOL, BEARER_SUBPROTOCOL_PREFIX

ORIGIN = "http://127.0.0.1"
OP_TEXT = 0x1
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA
_ZERO_MASK = b"\x00\x00\x00\x00"


class HandshakeRefused(Exception):
    """The server answered the upgrade with something other than ``101``."""

    def __init__(self, status: int) -> None:
        super().__init__(f"handshake refused with HTTP {status}")
        self.status = status


@dataclass(frozen=True)
class Target:
    """Where and how to connect: port, path, and how the stack expects the token."""

    port: int
    path: str
    auth: str  # "none" | "query" | "header" | "bearer"
    host: str = "127.0.0.1"
    #: Local address to connect from (another 127.0.0.x gives another ephemeral port range).
    source: str | None = None


def _frame(opcode: int, payload: bytes) -> bytes:
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length < 65536:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    return header + _ZERO_MASK + payload


def _request(target: Target, token: str | None) -> bytes:
    path = target.path
    protocols = [APP_SUBPROTOCOL]
    if token and target.auth == "query":
        path = f"{path}?token={token}"
    elif token and target.auth == "bearer":
        protocols.append(BEARER_SUBPROTOCOL_PREFIX + token)
    key = base64.b64encode(os.urandom(16)).decode()
    authorization = [f"Authorization: Bearer {token}"] if token and target.auth == "header" else []
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {target.host}:{target.port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        f"Origin: {ORIGIN}",
        f"Sec-WebSocket-Protocol: {', '.join(protocols)}",
        *authorization,
        "",
        "",
    ]
    return "\r\n".join(lines).encode()


class RawWebSocket:
    """One client connection; ``recv`` answers pings by itself."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.close_code: int | None = None

    @classmethod
    async def connect(cls, target: Target, token: str | None = None) -> RawWebSocket:
        """Open a connection and complete the upgrade.

        Raises:
            HandshakeRefused: the server did not answer ``101``.
            OSError, asyncio.IncompleteReadError: the connection failed.
        """
        local = (target.source, 0) if target.source else None
        reader, writer = await asyncio.open_connection(target.host, target.port, local_addr=local)
        try:
            writer.write(_request(target, token))
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
        except BaseException:
            writer.close()
            raise
        if status != 101:
            writer.close()
            raise HandshakeRefused(status)
        return cls(reader, writer)

    def send_text(self, text: str) -> None:
        """Queue a text frame (flow control is left to the kernel buffers)."""
        self.writer.write(_frame(OP_TEXT, text.encode()))

    async def recv(self) -> str | None:
        """Return the next text frame, or ``None`` once the server closed."""
        reader = self.reader
        while True:
            head = await reader.readexactly(2)
            opcode = head[0] & 0x0F
            length = head[1] & 0x7F
            if length == 126:
                (length,) = struct.unpack("!H", await reader.readexactly(2))
            elif length == 127:
                (length,) = struct.unpack("!Q", await reader.readexactly(8))
            payload = await reader.readexactly(length) if length else b""
            if opcode == OP_TEXT:
                return payload.decode()
            if opcode == OP_PING:
                self.writer.write(_frame(OP_PONG, payload))
            elif opcode == OP_CLOSE:
                self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                if not self.writer.is_closing():
                    self.writer.write(_frame(OP_CLOSE, payload[:2]))
                    self.writer.close()
                return None

    async def close(self, code: int = 1000, deadline: float = 5.0) -> None:
        """Run the close handshake (bounded by ``deadline`` seconds) and drop the socket."""
        try:
            if not self.writer.is_closing():
                self.writer.write(_frame(OP_CLOSE, struct.pack("!H", code)))
                async with asyncio.timeout(deadline):
                    while await self.recv() is not None:
                        pass
        except (OSError, asyncio.IncompleteReadError, TimeoutError):
            pass
        finally:
            self.writer.close()
