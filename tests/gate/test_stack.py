"""The composed gate: order, unknown routes, refusal modes, unexpected errors."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from channels.routing import URLRouter
from django.urls import path

from secure_ws import gate as gate_package
from secure_ws.codes import APP_SUBPROTOCOL, CloseCode, Reason
from secure_ws.gate.stack import secure_websocket
from tests.e2e.gate_asgi import info_consumer, websocket_app
from tests.gate.conftest import build_headers, set_gate

pytestmark = pytest.mark.usefixtures("demo_users")


def bearer(token: str) -> list[str]:
    return [APP_SUBPROTOCOL, f"bearer.{token}"]


async def test_full_gate_accepts_a_valid_token_and_fills_the_scope(
    communicator: Any, demo_users: dict[str, Any], token_for: Any
) -> None:
    comm = communicator(websocket_app, subprotocols=bearer(token_for(demo_users["alice"])))
    connected, subprotocol = await comm.connect()
    assert connected
    assert subprotocol == APP_SUBPROTOCOL
    report = json.loads(await comm.receive_from())
    assert report["client_ip"] == "203.0.113.7"
    assert report["origin"] == "https://app.example.com"
    assert report["username"] == "alice"
    assert len(report["connection_id"]) == 32
    await comm.disconnect()


async def test_unknown_route_is_refused_with_a_log_line_not_a_traceback(
    communicator: Any, demo_users: dict[str, Any], token_for: Any, caplog: Any
) -> None:
    token = token_for(demo_users["alice"])
    comm = communicator(websocket_app, path="/ws/nowhere/", subprotocols=bearer(token))
    with caplog.at_level(logging.INFO):
        connected, _ = await comm.connect()
        await comm.wait()
    assert not connected
    assert f"reason={Reason.UNKNOWN_ROUTE.value}" in caplog.text
    assert "Traceback" not in caplog.text
    assert token not in caplog.text


async def test_close_mode_accepts_then_closes_with_the_reason(
    communicator: Any, settings: Any
) -> None:
    set_gate(settings, REFUSAL_MODE="close")
    comm = communicator(websocket_app)
    connected, subprotocol = await comm.connect()
    assert connected
    assert subprotocol == APP_SUBPROTOCOL
    frame = json.loads(await comm.receive_from())
    assert frame == {"type": "error", "payload": {"code": Reason.CREDENTIALS_MISSING.value}}
    closed = await comm.receive_output()
    assert closed == {
        "type": "websocket.close",
        "code": int(CloseCode.UNAUTHORIZED),
        "reason": Reason.CREDENTIALS_MISSING.value,
    }


@pytest.mark.parametrize(("debug", "expected"), [(True, "credentials_missing"), (False, "403")])
async def test_the_default_refusal_mode_shows_the_reason_only_under_debug(
    communicator: Any, settings: Any, debug: bool, expected: str
) -> None:
    set_gate(settings, REFUSAL_MODE=None)
    settings.DEBUG = debug
    assert await refusal_code(communicator(websocket_app)) == expected


async def test_the_guard_refuses_plainly_in_close_mode(
    communicator: Any, settings: Any, demo_users: dict[str, Any], token_for: Any
) -> None:
    # An unknown path (a random-path flood) gets no accepted socket in any mode.
    set_gate(settings, REFUSAL_MODE="close")
    token = token_for(demo_users["alice"])
    comm = communicator(websocket_app, path="/ws/nowhere/", subprotocols=bearer(token))
    assert await refusal_code(comm) == "403"


@pytest.mark.parametrize("error", [RuntimeError("boom"), ValueError("not a route error")])
async def test_unexpected_error_before_accept_becomes_a_refusal(
    communicator: Any,
    demo_users: dict[str, Any],
    token_for: Any,
    caplog: Any,
    error: Exception,
) -> None:
    async def broken(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        raise error

    app = secure_websocket(URLRouter([path("ws/info/", broken)]))
    comm = communicator(app, subprotocols=bearer(token_for(demo_users["alice"])))
    connected, _ = await comm.connect()
    await comm.wait()
    assert not connected
    assert f"reason={Reason.SERVER_ERROR.value}" in caplog.text


async def test_refusals_never_reach_the_consumer(communicator: Any) -> None:
    reached: list[bool] = []

    async def consumer(scope: dict[str, Any], receive: Any, send: Any) -> None:
        reached.append(True)

    app = secure_websocket(URLRouter([path("ws/info/", consumer)]))
    comm = communicator(app)
    assert not (await comm.connect())[0]
    await comm.wait()
    assert reached == []


async def test_caps_are_released_when_the_connection_ends(
    communicator: Any, demo_users: dict[str, Any], token_for: Any, settings: Any
) -> None:
    set_gate(settings, MAX_CONNECTIONS_PER_USER=1)
    token = token_for(demo_users["bob"])
    for _ in range(3):
        comm = communicator(websocket_app, subprotocols=bearer(token))
        assert (await comm.connect())[0]
        await comm.disconnect()


async def test_unknown_route_middleware_alone_refuses_unknown_paths(
    communicator: Any, caplog: Any
) -> None:
    from secure_ws.gate.stack import UnknownRouteMiddleware

    app = UnknownRouteMiddleware(URLRouter([path("ws/info/", info_consumer)]))
    comm = communicator(app, path="/ws/other/")
    assert not (await comm.connect())[0]
    await comm.wait()
    assert f"reason={Reason.UNKNOWN_ROUTE.value}" in caplog.text
    known = communicator(app)
    assert (await known.connect())[0]
    await known.disconnect()


async def test_refused_raised_by_the_application_is_one_clean_refusal(
    communicator: Any, demo_users: dict[str, Any], token_for: Any, caplog: Any
) -> None:
    from secure_ws.exceptions import Refused

    async def refusing(scope: dict[str, Any], receive: Any, send: Any) -> None:
        raise Refused(Reason.NOT_AUTHENTICATED, "raised, not refused")

    app = secure_websocket(URLRouter([path("ws/info/", refusing)]))
    comm = communicator(app, subprotocols=bearer(token_for(demo_users["alice"])))
    assert not (await comm.connect())[0]
    await comm.wait()
    assert f"reason={Reason.NOT_AUTHENTICATED.value}" in caplog.text
    assert "Traceback" not in caplog.text


async def refusal_code(comm: Any) -> str:
    """The reason code a close-mode refusal sends, or ``"403"`` for a plain refusal."""
    accepted, _ = await comm.connect()
    if not accepted:
        return "403"
    code = str(json.loads(await comm.receive_from())["payload"]["code"])
    await comm.receive_output()
    return code


async def test_a_bad_origin_flood_is_throttled_once_the_bucket_is_empty(
    communicator: Any, settings: Any, caplog: Any
) -> None:
    # The throttle counts every attempt before the Origin check: refused floods are
    # throttled too, and cost no origin, Host or credential work once the bucket is empty.
    set_gate(settings, HANDSHAKE_RATE=1, HANDSHAKE_BURST=3, REFUSAL_MODE="close")
    codes = []
    for _ in range(6):
        comm = communicator(
            websocket_app,
            headers=build_headers(origin="https://evil.example"),
            client=("198.51.100.77", 1),
        )
        codes.append(await refusal_code(comm))
    # Throttle refusals stay a plain 403 in close mode: no accepted socket under a flood.
    assert codes == [Reason.ORIGIN_REFUSED.value] * 3 + ["403"] * 3
    assert caplog.text.count(f"reason={Reason.HANDSHAKE_RATE_LIMITED.value} ") == 3


async def test_a_malformed_handshake_flood_is_throttled_too(
    communicator: Any, settings: Any
) -> None:
    set_gate(settings, HANDSHAKE_RATE=1, HANDSHAKE_BURST=2, REFUSAL_MODE="close")
    codes = []
    for host in ("evil.example", "evil.example", "evil.example"):
        comm = communicator(
            websocket_app,
            headers=build_headers(host=host, user_agent=b"\xff"),
            client=("198.51.100.78", 1),
        )
        codes.append(await refusal_code(comm))
    assert codes == [Reason.BAD_HANDSHAKE.value] * 2 + ["403"]


def _gate_frames_alive() -> list[str]:
    """The secure_ws.gate coroutines suspended in any task's await chain, by name."""
    gate_dir = str(Path(gate_package.__file__).parent)
    found = []
    for task in asyncio.all_tasks():
        coro: Any = task.get_coro()
        while inspect.iscoroutine(coro):
            if coro.cr_frame is not None and coro.cr_code.co_filename.startswith(gate_dir):
                found.append(coro.cr_code.co_qualname)
            coro = coro.cr_await
    return found


async def test_an_open_connection_keeps_one_gate_frame_not_one_per_step(
    communicator: Any, demo_users: dict[str, Any], token_for: Any
) -> None:
    # The gate runs its steps from one frame: once admitted, nothing of the gate but that
    # frame stays suspended above the consumer (no frame per step, no receive wrapper).
    # Per-process tasks (the slot heartbeat) are not per connection: compare one open
    # connection with two.
    token = token_for(demo_users["alice"])
    frames = []
    comms = []
    for _ in range(2):
        comm = communicator(websocket_app, subprotocols=bearer(token))
        assert (await comm.connect())[0]
        await comm.receive_from()
        await comm.send_to(text_data="ping")
        assert await comm.receive_from() == "ping"
        comms.append(comm)
        frames.append(Counter(_gate_frames_alive()))
    assert list((frames[1] - frames[0]).elements()) == ["Gate.__call__"]
    for comm in comms:
        await comm.disconnect()


def test_the_gate_runs_its_steps_in_the_documented_order() -> None:
    from secure_ws.gate.caps import ConnectionCapMiddleware
    from secure_ws.gate.client import ClientAddressMiddleware
    from secure_ws.gate.credentials import CredentialsMiddleware
    from secure_ws.gate.origin import OriginMiddleware
    from secure_ws.gate.stack import Gate
    from secure_ws.gate.throttle import HandshakeThrottleMiddleware
    from secure_ws.gate.transport import TransportMiddleware

    inner = URLRouter([path("ws/info/", info_consumer)])
    gate = secure_websocket(inner)
    assert isinstance(gate, Gate)
    assert [type(step) for step in gate.steps] == [
        ClientAddressMiddleware,
        HandshakeThrottleMiddleware,
        TransportMiddleware,
        OriginMiddleware,
        CredentialsMiddleware,
    ]
    assert isinstance(gate.caps, ConnectionCapMiddleware)
    assert gate.inner is inner
