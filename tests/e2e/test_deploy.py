"""daphne started with the documented flags cuts an oversized message itself.

The flags come from ``deploy/daphne.env`` (``DAPHNE_LIMITS``), the file the systemd unit
reads and docs/deploy.md explains, so the test runs what an operator deploys (minus TLS,
which nginx terminates).
"""

from __future__ import annotations

import asyncio
import shlex
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.e2e.deploy_asgi:application"


def documented_flags() -> list[str]:
    for line in (ROOT / "deploy" / "daphne.env").read_text().splitlines():
        if line.startswith("DAPHNE_LIMITS="):
            return shlex.split(shlex.split(line.partition("=")[2])[0])
    raise AssertionError("DAPHNE_LIMITS missing from deploy/daphne.env")


def flag_value(flags: list[str], name: str) -> int:
    return int(flags[flags.index(name) + 1])


def test_documented_flags_are_daphnes_real_options() -> None:
    from daphne.cli import CommandLineInterface

    parser = CommandLineInterface().parser
    known = {option for action in parser._actions for option in action.option_strings}
    flags = documented_flags()
    names = [flag for flag in flags if flag.startswith("--")]
    assert set(names) <= known, set(names) - known
    for required in (
        "--websocket-max-message-size",
        "--ping-interval",
        "--ping-timeout",
        "--websocket_connect_timeout",
        "--application-close-timeout",
    ):
        assert required in names
    assert "--proxy-headers" not in names


def test_documented_limit_matches_the_declared_server_limit() -> None:
    from secure_ws.conf import DEFAULTS

    env = (ROOT / "deploy" / "daphne.env").read_text()
    limit = flag_value(documented_flags(), "--websocket-max-message-size")
    assert f"SECURE_WS_SERVER_MAX_MESSAGE_BYTES={limit}\n" in env
    assert limit >= DEFAULTS["MAX_MESSAGE_BYTES"]


async def _open(server: Any) -> ClientConnection:
    # max_size raised far above the server's limit: whatever cuts the message, it is not
    # the client.
    return await connect(server.ws_url + "/ws/", proxy=None, open_timeout=10, max_size=2**24)


async def _expect_dropped(conn: ClientConnection) -> None:
    """The server ends the connection without a close frame (autobahn's ``failByDrop``).

    daphne 4.2.3 leaves autobahn's ``failByDrop`` on: a message over
    ``--websocket-max-message-size`` fails the connection by aborting TCP, so the client
    sees 1006 (abnormal closure), not 1009. secure_ws' own ``MAX_MESSAGE_BYTES`` sits below
    the server limit so that honest oversize gets a ``too_large`` error and close 4009
    first (docs/deploy.md).
    """
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(conn.recv(), 10)
    assert closed.value.rcvd is None
    assert closed.value.sent is None
    assert conn.close_code == 1006


@pytest.mark.parametrize("fragmented", [False, True], ids=["one-frame", "fragmented"])
async def test_oversized_message_is_cut_by_daphne_before_the_application(
    daphne_server: Any, fragmented: bool
) -> None:
    flags = documented_flags()
    limit = flag_value(flags, "--websocket-max-message-size")
    server = daphne_server(application=APP, daphne_args=flags)
    conn = await _open(server)
    try:
        await conn.send("x" * 1000)
        assert await asyncio.wait_for(conn.recv(), 10) == "1000"
        await conn.send("y" * limit)  # exactly at the limit: still delivered
        assert await asyncio.wait_for(conn.recv(), 10) == str(limit)

        oversized = limit + 1
        if fragmented:
            # Every frame is small; only the message as a whole is too big.
            chunk = 16 * 1024
            await conn.send(
                "z" * min(chunk, oversized - start) for start in range(0, oversized, chunk)
            )
        else:
            await conn.send("z" * oversized)
        await _expect_dropped(conn)
    finally:
        await conn.close()
    server.stop()
    log = server.log()
    assert "app received 1000" in log
    assert f"app received {limit}" in log
    assert f"app received {limit + 1}" not in log


async def test_daphne_does_not_negotiate_compression(daphne_server: Any) -> None:
    """permessage-deflate (CRIME/BREACH-style leaks, zip bombs) stays off: OWASP's advice."""
    server = daphne_server(application=APP, daphne_args=documented_flags())
    conn = await _open(server)  # the websockets client offers permessage-deflate
    try:
        assert conn.response is not None
        assert "Sec-WebSocket-Extensions" not in conn.response.headers
        await conn.send("ping")
        assert await asyncio.wait_for(conn.recv(), 10) == "4"
    finally:
        await conn.close()
