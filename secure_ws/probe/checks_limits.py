"""Limit checks: idle and slow connections, message floods, connection floods.

They run last and stay bounded: every flood sends at most the configured count, through
the global token bucket, and stops as soon as the server shows a limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
import urllib.parse

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from secure_ws.probe.checks_common import A04, Result, baseline_needed
from secure_ws.probe.checks_handshake import _is_loopback
from secure_ws.probe.checks_messages import ping
from secure_ws.probe.model import Verdict
from secure_ws.probe.registry import check
from secure_ws.probe.session import ProbeSession, close_code_of, error_code

LIMIT_CLOSES = frozenset({1008, 4008, 1013, 4013, 4429})


@check(
    "limits.idle_connection",
    "limits",
    "An idle connection is closed by the server",
    "Idle sockets hold memory and a connection slot forever; a timeout reclaims them.",
    A04,
)
async def limits_idle(session: ProbeSession) -> Result:
    skip = await baseline_needed(session)
    if skip:
        return skip
    wait = session.config.wait
    start = time.monotonic()
    async with session.connection() as conn:
        try:
            while time.monotonic() - start < wait:
                await asyncio.wait_for(conn.recv(), max(0.01, wait - (time.monotonic() - start)))
        except TimeoutError:
            return Verdict.WARN, f"still open after {wait:g}s idle (no idle timeout, or longer)"
        except ConnectionClosed as closed:
            code = close_code_of(closed)
            return Verdict.PASS, f"closed {code} after {time.monotonic() - start:.1f}s idle"
    return Verdict.WARN, f"still open after {wait:g}s idle"


@check(
    "limits.slow_handshake",
    "limits",
    "A handshake that never completes is dropped",
    "Slowloris: half-sent handshakes tie up sockets unless the server times them out.",
    A04,
)
async def limits_slow_handshake(session: ProbeSession) -> Result:
    parts = urllib.parse.urlsplit(session.config.url)
    secure = parts.scheme == "wss"
    host = parts.hostname or "localhost"
    port = parts.port or (443 if secure else 80)
    await session.bucket.take()
    context = ssl.create_default_context() if secure else None
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(host, port, ssl=context), timeout=10
    )
    wait = session.config.wait
    try:
        writer.write(f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\n".encode())
        await writer.drain()
        start = time.monotonic()
        try:
            data = await asyncio.wait_for(reader.read(1024), wait)
        except TimeoutError:
            if not secure and _is_loopback(session.config.url):
                # The app server itself, without the proxy that owns this limit.
                return Verdict.SKIP, (
                    f"half-sent handshake still open after {wait:g}s on plain ws:// loopback: "
                    "the app server bounds header time loosely; the TLS proxy must "
                    "(nginx client_header_timeout, docs/probe.md)"
                )
            return Verdict.WARN, f"half-sent handshake still open after {wait:g}s"
        elapsed = time.monotonic() - start
        answer = data.split(b"\r\n", 1)[0].decode("latin-1") if data else "connection closed"
        return Verdict.PASS, f"server gave up after {elapsed:.1f}s: {answer}"
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


@check(
    "limits.message_flood",
    "limits",
    "A message flood is rate limited",
    "Without a per-connection rate one client can saturate the server and its fan-out.",
    A04,
)
async def limits_message_flood(session: ProbeSession) -> Result:
    skip = await baseline_needed(session)
    if skip:
        return skip
    count = session.config.flood_messages
    seen: list[str] = []
    async with session.connection() as conn:

        async def read() -> None:
            with contextlib.suppress(ConnectionClosed):
                async for frame in conn:
                    code = error_code(frame)
                    if code and ("rate" in code or "limit" in code or "many" in code):
                        seen.append(f"error {code}")
                        return

        reader = asyncio.create_task(read())
        start = time.monotonic()
        sent = 0
        try:
            for sent in range(1, count + 1):
                if reader.done():
                    break
                await session.send(conn, ping(session, client_id=str(sent)))
            await asyncio.wait_for(asyncio.shield(reader), 2.0)
        except ConnectionClosed as closed:
            seen.append(f"closed {close_code_of(closed)}")
        except TimeoutError:
            pass
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
        if conn.close_code is not None and not seen:
            seen.append(f"closed {conn.close_code}")
        elapsed = max(0.001, time.monotonic() - start)
    rate = sent / elapsed
    if seen:
        code_text = seen[0]
        if code_text.startswith("closed") and int(code_text.split()[1]) not in LIMIT_CLOSES:
            return Verdict.WARN, f"after {sent} messages at {rate:.0f}/s: {code_text}"
        return Verdict.PASS, f"limited after {sent} messages at {rate:.0f}/s: {code_text}"
    if rate < 30:
        return Verdict.WARN, f"{sent} messages at {rate:.0f}/s not limited (raise --max-rate)"
    return Verdict.FAIL, f"{sent} messages at {rate:.0f}/s accepted without rate limiting"


@check(
    "limits.connection_flood",
    "limits",
    "Concurrent connections per client are capped",
    "Without per-user and per-IP caps one client can exhaust the server's sockets.",
    A04,
)
async def limits_connection_flood(session: ProbeSession) -> Result:
    skip = await baseline_needed(session)
    if skip:
        return skip
    count = session.config.flood_connections
    opened = 0
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(count):
            try:
                # The cap refuses the same handshake the throttle would: no retry here.
                conn = await stack.enter_async_context(
                    session.connection(retry_throttled=False)
                )
            except InvalidStatus as exc:
                status = exc.response.status_code
                return Verdict.PASS, f"capped: {opened} open, next one refused with HTTP {status}"
            except (InvalidHandshake, OSError, TimeoutError) as exc:
                return (
                    Verdict.PASS,
                    f"capped: {opened} open, next one failed ({type(exc).__name__})",
                )
            try:
                await asyncio.wait_for(conn.recv(), 0.05)
            except TimeoutError:
                pass
            except ConnectionClosed as closed:
                return (
                    Verdict.PASS,
                    f"capped: {opened} open, next one closed {close_code_of(closed)}",
                )
            opened += 1
    return Verdict.FAIL, f"{opened} concurrent connections accepted without a cap"
