"""File events from outside: real server processes, the ``websockets`` client, real Redis.

The demo application (``project.asgi``) runs behind the full gate, on daphne and on uvicorn
(``servers`` marker); clients authenticate with ``bearer.<jwt>`` subprotocol entries exactly
as the JS client does.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from secure_ws.codes import APP_SUBPROTOCOL, CloseCode, ErrorCode, Reason
from tests.conftest import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.servers]

WS_PATH = "/ws/files/"
#: Guards against hangs only; no test asserts how fast anything is.
HANG_GUARD = 15


@pytest.fixture
def server_env(tmp_path: Path) -> dict[str, str]:
    return {
        "MEDIA_ROOT": str(tmp_path / "media"),
        # Every test opens several sockets from 127.0.0.1; the handshake throttle is
        # tested by the gate's own suite.
        "SECURE_WS_HANDSHAKE_RATE": "100000",
    }


@pytest.fixture
def start(asgi_server: Callable[..., Any], server_env: dict[str, str]) -> Callable[..., Any]:
    def start_server(**env: str) -> Any:
        return asgi_server(env={**server_env, **env})

    return start_server


@pytest.fixture(scope="module")
def files_server(
    shared_asgi_server: Callable[..., ServerProcess], tmp_path_factory: pytest.TempPathFactory
) -> ServerProcess:
    """The demo project, one per kind for the module's tests that only exchange frames."""
    media = tmp_path_factory.mktemp("media")
    return shared_asgi_server(
        settings_module="tests.e2e.shared_settings",
        env={"MEDIA_ROOT": str(media), "SECURE_WS_HANDSHAKE_RATE": "100000"},
    )


async def open_ws(server: Any, token: str) -> ClientConnection:
    return await connect(
        server.ws_url + WS_PATH,
        origin=server.origin,
        subprotocols=[APP_SUBPROTOCOL, f"bearer.{token}"],  # type: ignore[list-item]
        proxy=None,
        open_timeout=HANG_GUARD,
    )


async def next_frame(conn: ClientConnection) -> dict[str, Any]:
    return dict(json.loads(await asyncio.wait_for(conn.recv(), HANG_GUARD)))


async def frame_of_type(
    conn: ClientConnection, kind: str, sender: str | None = None
) -> dict[str, Any]:
    """The next frame of type ``kind`` (from ``sender``, if given), skipping others."""
    while True:
        frame = await next_frame(conn)
        if frame["type"] != kind:
            continue
        if sender is None or frame["payload"].get("sender", {}).get("username") == sender:
            return frame


async def ask(conn: ClientConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """Send ``frame`` (with an id) and return the reply carrying that id."""
    frame_id = frame.setdefault("id", uuid.uuid4().hex)
    await conn.send(json.dumps(frame))
    while True:
        reply = await next_frame(conn)
        if reply.get("id") == frame_id:
            return reply


async def subscribe(conn: ClientConnection, folder: str = "team") -> dict[str, Any]:
    return await ask(conn, {"type": "subscribe", "payload": {"folder": folder}})


async def nothing_arrives(conn: ClientConnection, seconds: float = 0.5) -> bool:
    try:
        await asyncio.wait_for(conn.recv(), seconds)
    except TimeoutError:
        return True
    return False


def upload_frame() -> dict[str, Any]:
    return {
        "type": "file_upload",
        "payload": {
            "folder": "team",
            "file_id": str(uuid.uuid4()),
            "name": "plan.pdf",
            "size": 2048,
            "content_type": "application/pdf",
            "sha256": "c" * 64,
        },
    }


def http_upload(server: Any, token: str, folder: str, name: str, content: bytes) -> Any:
    boundary = uuid.uuid4().hex
    body = (
        (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: text/plain\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(
        f"{server.http_url}/api/folders/{folder}/files/",
        data=body,
        method="POST",
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": f"multipart/form-data; boundary={boundary}",
        },
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=HANG_GUARD) as response:
        return response.status, json.loads(response.read())


async def test_events_fan_out_to_folder_members_only(
    start: Callable[..., Any], demo_users: dict[str, Any], token_for: Any
) -> None:
    server = start()
    alice = await open_ws(server, token_for(demo_users["alice"]))
    carol = await open_ws(server, token_for(demo_users["carol"]))
    mallory = await open_ws(server, token_for(demo_users["mallory"]))
    assert (await subscribe(alice))["type"] == "ack"
    assert (await subscribe(carol))["type"] == "ack"
    refused = await subscribe(mallory)
    assert refused["payload"]["code"] == ErrorCode.FORBIDDEN
    frame = upload_frame()
    await alice.send(json.dumps(frame))
    event = await frame_of_type(carol, "file.uploaded")
    assert event["payload"]["file_id"] == frame["payload"]["file_id"]
    assert event["payload"]["sender"]["username"] == "alice"
    assert await nothing_arrives(mallory)
    for conn in (alice, carol, mallory):
        await conn.close()


async def test_an_http_upload_reaches_websocket_subscribers(
    start: Callable[..., Any], demo_users: dict[str, Any], token_for: Any
) -> None:
    server = start()
    carol = await open_ws(server, token_for(demo_users["carol"]))
    await subscribe(carol)
    content = b"quarterly numbers\n"
    status, body = await asyncio.to_thread(
        http_upload, server, token_for(demo_users["bob"]), "team", "numbers.txt", content
    )
    assert status == 201
    event = await frame_of_type(carol, "file.uploaded")
    assert event["payload"]["file_id"] == body["file_id"]
    assert event["payload"]["name"] == "numbers.txt"
    assert event["payload"]["size"] == len(content)
    assert event["payload"]["sender"]["username"] == "bob"
    await carol.close()


async def test_two_server_processes_deliver_each_others_events(
    start: Callable[..., Any], demo_users: dict[str, Any], token_for: Any
) -> None:
    first, second = start(), start()
    alice = await open_ws(first, token_for(demo_users["alice"]))
    carol = await open_ws(second, token_for(demo_users["carol"]))
    bob = await open_ws(second, token_for(demo_users["bob"]))
    await subscribe(alice)
    await subscribe(carol)
    await subscribe(bob)
    await alice.send(json.dumps(upload_frame()))
    from_first = await frame_of_type(carol, "file.uploaded", sender="alice")
    await bob.send(json.dumps(upload_frame()))
    from_second = await frame_of_type(alice, "file.uploaded", sender="bob")
    assert from_first["payload"]["sender"]["username"] == "alice"
    assert from_second["payload"]["sender"]["username"] == "bob"
    # One sequence per folder, shared by both processes through Redis.
    assert from_second["payload"]["seq"] == from_first["payload"]["seq"] + 1
    for conn in (alice, carol, bob):
        await conn.close()


async def test_a_flooding_client_is_limited_while_another_clients_ping_answers(
    start: Callable[..., Any], demo_users: dict[str, Any], token_for: Any
) -> None:
    server = start(SECURE_WS_MESSAGE_RATE="5")
    flooder = await open_ws(server, token_for(demo_users["alice"]))
    calm = await open_ws(server, token_for(demo_users["bob"]))

    async def flood() -> list[dict[str, Any]]:
        for n in range(300):
            try:
                await flooder.send(json.dumps({"type": "ping", "id": f"f{n}"}))
            except ConnectionClosed:
                break
        frames = []
        try:
            while True:
                frames.append(await next_frame(flooder))
        except ConnectionClosed:
            pass
        return frames

    flooding = asyncio.create_task(flood())
    pong = await ask(calm, {"type": "ping"})
    assert pong["type"] == "pong"
    frames = await asyncio.wait_for(flooding, HANG_GUARD)
    codes = [f["payload"].get("code") for f in frames if f["type"] == "error"]
    assert ErrorCode.RATE_LIMITED in codes
    assert codes[-1] == Reason.RATE_LIMITED
    assert flooder.close_code == CloseCode.RATE_LIMITED
    assert (await ask(calm, {"type": "ping"}))["type"] == "pong"
    await calm.close()


async def test_a_token_that_expires_mid_connection_closes_with_4401(
    start: Callable[..., Any], demo_users: dict[str, Any], token_for: Any
) -> None:
    server = start()
    token = token_for(demo_users["carol"], exp=int(time.time()) + 3)
    conn = await open_ws(server, token)
    warning = await frame_of_type(conn, "auth.expiring")
    assert warning["payload"]["expires_in"] <= 3
    error = await frame_of_type(conn, "error")
    assert error["payload"]["code"] == Reason.TOKEN_EXPIRED
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(conn.recv(), HANG_GUARD)
    assert conn.close_code == CloseCode.UNAUTHORIZED


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("", ErrorCode.INVALID_JSON),
        ("{not json", ErrorCode.INVALID_JSON),
        ("[]", ErrorCode.INVALID_MESSAGE),
    ],
)
async def test_frames_that_crash_plain_channels_consumers_are_answered(
    files_server: ServerProcess,
    transactional_db: None,
    demo_users: dict[str, Any],
    token_for: Any,
    frame: str,
    code: str,
) -> None:
    server = files_server
    conn = await open_ws(server, token_for(demo_users["carol"]))
    await conn.send(frame)
    assert (await next_frame(conn))["payload"]["code"] == code
    assert (await ask(conn, {"type": "ping"}))["type"] == "pong"
    await conn.send(b"\x00binary")
    assert (await next_frame(conn))["payload"]["code"] == Reason.BINARY_NOT_ALLOWED
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(conn.recv(), HANG_GUARD)
    # daphne cannot send 1003 (autobahn allows only 1000 and 3000-4999): 4003 stands in.
    assert conn.close_code == server.expect.close_code(CloseCode.UNSUPPORTED_DATA)


async def test_policy_closes_reach_the_client_with_a_code_the_server_can_send(
    start: Callable[..., Any], demo_users: dict[str, Any], token_for: Any
) -> None:
    server = start()
    conn = await open_ws(server, token_for(demo_users["carol"]))
    await conn.send("x" * (70 * 1024))
    assert (await next_frame(conn))["payload"]["code"] == ErrorCode.TOO_LARGE
    try:
        for _ in range(20):
            await conn.send(json.dumps({"type": "nope"}))
    except ConnectionClosed:
        pass
    codes = []
    try:
        while True:
            codes.append((await next_frame(conn))["payload"]["code"])
    except ConnectionClosed:
        pass
    assert codes[-1] == Reason.TOO_MANY_VIOLATIONS
    assert conn.close_code == server.expect.close_code(CloseCode.POLICY_VIOLATION)

    big = await open_ws(server, token_for(demo_users["carol"]))
    await big.send("x" * (300 * 1024))
    assert (await next_frame(big))["payload"]["code"] == Reason.TOO_LARGE
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(big.recv(), HANG_GUARD)
    assert big.close_code == server.expect.close_code(CloseCode.MESSAGE_TOO_BIG)
