"""The gate from outside: real servers, real ``websockets`` client, real Redis and PostgreSQL.

WebsocketCommunicator skips the server's own handshake; these tests go through it, so what
they check is what a browser or an attacker would see. Every test runs on daphne and on
uvicorn (``servers`` marker); ``server.expect`` holds where the servers differ.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from django.conf import settings
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from secure_ws.codes import APP_SUBPROTOCOL, CloseCode, Reason, private_close_code
from tests.conftest import ServerProcess
from tests.waiting import async_wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.servers, pytest.mark.usefixtures("demo_users")]

APP = "tests.e2e.gate_asgi:application"
PATH = "/ws/info/"

#: Origin tricks against an allow-list of http://127.0.0.1:<port> and http://localhost:<port>.
ORIGIN_TRICKS = [
    "null",
    "http://127.0.0.1:{port}.evil.net",
    "http://evil127.0.0.1:{port}",
    "http://127.0.0.1.evil.net:{port}",
    "http://127.0.0.1:{port}@evil.net",
    "http://evil.net@127.0.0.1:{port}",
    "https://127.0.0.1:{port}",
    "http://127.0.0.1:1{port}",
    "http://127.0.0.1",
    "http://127.0.0.1:99999",
    "http://127.0.0.1:{port}/path",
    "ws://127.0.0.1:{port}",
    "http://localhost.evil.net:{port}",
]


def bearer(token: str) -> list[Any]:
    return [APP_SUBPROTOCOL, f"bearer.{token}"]


async def open_ws(server: Any, path: str = PATH, **kwargs: Any) -> ClientConnection:
    kwargs.setdefault("origin", server.origin)
    kwargs.setdefault("subprotocols", [APP_SUBPROTOCOL])
    return await connect(server.ws_url + path, proxy=None, open_timeout=10, **kwargs)


async def report_of(conn: ClientConnection) -> dict[str, Any]:
    return dict(json.loads(await asyncio.wait_for(conn.recv(), 10)))


async def refused_status(server: Any, path: str = PATH, **kwargs: Any) -> int:
    try:
        conn = await open_ws(server, path, **kwargs)
    except InvalidStatus as exc:
        return int(exc.response.status_code)
    await conn.close()
    raise AssertionError("the handshake was accepted")


def raw_handshake(port: int, lines: list[bytes], path: str = PATH) -> bytes:
    """Send a hand-written handshake; return the server's status line."""
    key = base64.b64encode(os.urandom(16))
    request = [
        f"GET {path} HTTP/1.1".encode(),
        f"Host: 127.0.0.1:{port}".encode(),
        b"Upgrade: websocket",
        b"Connection: Upgrade",
        b"Sec-WebSocket-Key: " + key,
        b"Sec-WebSocket-Version: 13",
        *lines,
        b"",
        b"",
    ]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"\r\n".join(request))
        return sock.recv(4096).split(b"\r\n", 1)[0]


def _read(request: urllib.request.Request) -> bytes:
    with urllib.request.urlopen(request, timeout=10) as response:
        return bytes(response.read())


def ticket_request(server: Any, token: str, origin: str) -> urllib.request.Request:
    """``POST /api/ws-ticket/`` as a logged-in page on ``origin`` sends it."""
    return urllib.request.Request(
        server.http_url + "/api/ws-ticket/",
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Origin": origin},
    )


@pytest.fixture(scope="module")
def gate_server(shared_asgi_server: Callable[..., ServerProcess]) -> ServerProcess:
    """One gate server per kind for the module: starting one per test was most of its time."""
    return shared_asgi_server(application=APP, settings_module="tests.e2e.shared_settings")


@pytest.fixture
def server(gate_server: ServerProcess, transactional_db: None) -> ServerProcess:
    """The module's gate server; its ``log()`` shows what this test caused, nothing before."""
    return gate_server.since_now()


async def test_subprotocol_token_is_accepted_with_the_app_subprotocol(
    server: Any, demo_users: dict[str, Any], token_for: Any
) -> None:
    token = token_for(demo_users["alice"])
    async with await open_ws(server, subprotocols=bearer(token)) as conn:
        assert conn.subprotocol == APP_SUBPROTOCOL
        report = await report_of(conn)
    assert report["username"] == "alice"
    assert report["auth_method"] == "subprotocol"
    assert report["subprotocols"] == [APP_SUBPROTOCOL]
    assert token not in server.log()


async def test_header_token_without_origin_is_accepted(
    server: Any, demo_users: dict[str, Any], token_for: Any
) -> None:
    token = token_for(demo_users["bob"])
    async with await open_ws(
        server, origin=None, additional_headers={"Authorization": f"Bearer {token}"}
    ) as conn:
        report = await report_of(conn)
    assert (report["username"], report["auth_method"], report["origin"]) == ("bob", "header", None)


async def test_subprotocol_token_without_origin_is_refused(
    server: Any, demo_users: dict[str, Any], token_for: Any
) -> None:
    token = token_for(demo_users["bob"])
    assert await refused_status(server, origin=None, subprotocols=bearer(token)) == 403
    assert f"reason={Reason.ORIGIN_MISSING.value}" in server.log()


async def test_ticket_works_once_and_only_once(
    server: Any, demo_users: dict[str, Any], token_for: Any
) -> None:
    request = ticket_request(server, token_for(demo_users["carol"]), server.origin)
    body = await asyncio.to_thread(_read, request)
    ticket = json.loads(body)["ticket"]
    async with await open_ws(server, f"{PATH}?ticket={ticket}") as conn:
        report = await report_of(conn)
    assert (report["username"], report["auth_method"]) == ("carol", "ticket")
    assert await refused_status(server, f"{PATH}?ticket={ticket}") == 403
    # The refusal's log line comes after everything the server logs about the handshake.
    await async_wait_until(lambda: "reason=" in server.log(), message="the refusal log line")
    assert ticket not in server.log()


async def test_ticket_endpoint_refuses_a_foreign_origin(
    server: Any, demo_users: dict[str, Any], token_for: Any
) -> None:
    request = ticket_request(server, token_for(demo_users["carol"]), "http://evil.example")
    with pytest.raises(urllib.error.HTTPError) as caught:
        await asyncio.to_thread(lambda: urllib.request.urlopen(request, timeout=10))
    caught.value.close()
    assert caught.value.code == 403


async def test_every_origin_trick_is_refused(
    server: Any, demo_users: dict[str, Any], token_for: Any
) -> None:
    token = token_for(demo_users["alice"])
    statuses = []
    for trick in ORIGIN_TRICKS:
        origin = trick.format(port=server.port)
        statuses.append(await refused_status(server, origin=origin, subprotocols=bearer(token)))
    # autobahn already answers 400 to an Origin whose port it cannot parse; the gate answers
    # 403 to everything else, and logs each with its reason.
    if server.expect.rejects_unparsable_origin_port:
        assert set(statuses) <= {400, 403}
        assert statuses.count(403) >= len(ORIGIN_TRICKS) - 3
    else:
        assert set(statuses) == {403}
    log = server.log()
    assert log.count(f"reason={Reason.ORIGIN_REFUSED.value}") == statuses.count(403)
    assert "Traceback" not in log
    assert token not in log


async def test_spoofed_forwarded_for_is_ignored(
    server: Any, demo_users: dict[str, Any], token_for: Any
) -> None:
    token = token_for(demo_users["alice"])
    async with await open_ws(
        server,
        subprotocols=bearer(token),
        additional_headers={"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Proto": "https"},
    ) as conn:
        report = await report_of(conn)
    assert (report["client_ip"], report["scheme"]) == ("127.0.0.1", "ws")


async def test_hostile_handshakes_get_403_not_500(
    server: Any, demo_users: dict[str, Any], token_for: Any
) -> None:
    token = token_for(demo_users["alice"]).encode()
    origin = server.origin.encode()
    protocol = b"Sec-WebSocket-Protocol: " + APP_SUBPROTOCOL.encode() + b", bearer." + token
    cases = {
        "duplicate origin": [b"Origin: " + origin, b"Origin: " + origin, protocol],
        "duplicate authorization": [
            b"Origin: " + origin,
            b"Authorization: Bearer " + token,
            b"Authorization: Bearer " + token,
        ],
        "junk port": [b"Origin: http://x:99999", protocol],
        "non-utf8 header": [b"Origin: " + origin, b"X-Junk: \xff\xfe", protocol],
        "root path smuggling": [b"Origin: " + origin, b"Daphne-Root-Path: /ws", protocol],
    }
    # Which layer answers differs by server (conftest.SERVER_TRAITS); never a 500, never an
    # open socket where the gate must refuse. (status, the gate's reason or None).
    expect = server.expect
    expected: dict[str, tuple[bytes, Reason | None]] = {
        # Both servers refuse a second Origin line themselves.
        "duplicate origin": (b"400", None),
        "duplicate authorization": (
            (b"403", Reason.CREDENTIALS_INVALID)  # joined into one malformed value
            if expect.joins_repeated_headers
            else (b"403", Reason.BAD_HANDSHAKE)  # seen twice by the gate
        ),
        "junk port": (
            (b"400", None)
            if expect.rejects_unparsable_origin_port
            else (b"403", Reason.ORIGIN_REFUSED)
        ),
        "non-utf8 header": (b"403", Reason.BAD_HANDSHAKE),
        "root path smuggling": (
            (b"403", Reason.BAD_HANDSHAKE)
            if expect.honours_root_path_header
            else (b"101", None)  # the header means nothing to this server
        ),
    }
    statuses = {
        name: (await asyncio.to_thread(raw_handshake, server.port, lines)).split(b" ")[1]
        for name, lines in cases.items()
    }
    assert statuses == {name: status for name, (status, _) in expected.items()}
    log = server.log()
    reasons = Counter(reason for _, reason in expected.values() if reason is not None)
    for reason, count in reasons.items():
        assert log.count(f"reason={reason.value}") == count, reason
    assert "Traceback" not in log
    assert token.decode() not in log


async def test_unknown_path_is_refused_cleanly(
    server: Any, demo_users: dict[str, Any], token_for: Any
) -> None:
    token = token_for(demo_users["alice"])
    assert await refused_status(server, "/ws/nowhere/", subprotocols=bearer(token)) == 403
    log = server.log()
    assert f"reason={Reason.UNKNOWN_ROUTE.value}" in log
    assert "Traceback" not in log


async def test_two_server_processes_share_one_user_cap(
    asgi_server: Callable[..., Any], demo_users: dict[str, Any], token_for: Any
) -> None:
    env = {
        "SECURE_WS_MAX_CONNECTIONS_PER_USER": "2",
        # Under the run's prefix, so the session-end clean-up removes these keys too.
        "SECURE_WS_KEY_PREFIX": f"{settings.SECURE_WS['KEY_PREFIX']}-caps-{uuid.uuid4().hex[:8]}",
    }
    first = asgi_server(application=APP, env=env)
    second = asgi_server(application=APP, env=env)
    token = token_for(demo_users["alice"])
    held = [
        await open_ws(first, subprotocols=bearer(token), origin=first.origin),
        await open_ws(second, subprotocols=bearer(token), origin=second.origin),
    ]
    for conn in held:
        await report_of(conn)
    assert await refused_status(first, subprotocols=bearer(token), origin=first.origin) == 403
    assert await refused_status(second, subprotocols=bearer(token), origin=second.origin) == 403
    assert f"reason={Reason.USER_CONNECTION_LIMIT.value}" in first.log()
    await held[0].close()

    async def slot_released() -> ClientConnection | None:
        # The server releases the slot when its consumer returns, shortly after the close.
        try:
            return await open_ws(second, subprotocols=bearer(token), origin=second.origin)
        except InvalidStatus:
            return None

    async with await async_wait_until(slot_released, message="the slot's release") as conn:
        assert (await report_of(conn))["username"] == "alice"
    await held[1].close()


# ---------------------------------------------------------------------- REFUSAL_MODE="close"


@pytest.fixture(scope="module")
def shared_close_mode_server(shared_asgi_server: Callable[..., ServerProcess]) -> ServerProcess:
    """The demo project with ``REFUSAL_MODE = "close"``, one per kind for the module."""
    return shared_asgi_server(settings_module="tests.e2e.close_mode_settings")


@pytest.fixture
def close_mode_server(
    shared_close_mode_server: ServerProcess, transactional_db: None
) -> ServerProcess:
    return shared_close_mode_server.since_now()


async def refusal_frame_and_close(conn: ClientConnection) -> tuple[dict[str, Any], int | None]:
    """Read the ``error`` frame of an accept-then-close refusal, then wait for the close."""
    frame = json.loads(await asyncio.wait_for(conn.recv(), 10))
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(conn.recv(), 10)
    return frame, conn.close_code


@pytest.mark.parametrize(
    ("case", "reason", "close_code"),
    [
        # The gate: credentials and origin.
        ("no_token", Reason.CREDENTIALS_MISSING, CloseCode.UNAUTHORIZED),
        ("foreign_origin", Reason.ORIGIN_REFUSED, CloseCode.FORBIDDEN),
        # The consumer: a valid token but no secure-ws.v1 (1008, which daphne cannot send;
        # a refusal closes with the stand-in on every server).
        ("no_app_subprotocol", Reason.SUBPROTOCOL_REQUIRED, private_close_code(1008)),
    ],
)
async def test_close_mode_refusal_sends_the_reason_then_a_sendable_code(
    close_mode_server: Any,
    demo_users: dict[str, Any],
    token_for: Any,
    case: str,
    reason: Reason,
    close_code: int,
) -> None:
    token = token_for(demo_users["alice"])
    options: dict[str, Any] = {
        "no_token": {},
        "foreign_origin": {"origin": "http://evil.example", "subprotocols": bearer(token)},
        "no_app_subprotocol": {"subprotocols": [f"bearer.{token}"]},
    }[case]
    async with await open_ws(close_mode_server, "/ws/files/", **options) as conn:
        assert conn.subprotocol in (APP_SUBPROTOCOL, None)
        frame, code = await refusal_frame_and_close(conn)
    assert frame == {"type": "error", "payload": {"code": reason.value}}
    assert code == close_code
    await async_wait_until(
        lambda: f"reason={reason.value}" in close_mode_server.log(), message="the refusal log line"
    )
    log = close_mode_server.log()
    assert f"reason={reason.value}" in log
    assert "Traceback" not in log
    assert token not in log
