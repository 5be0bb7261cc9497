"""The default REFUSAL_MODE, from the outside: the reason under DEBUG, a bare 403 otherwise.

Real servers, real ``websockets`` client. With ``REFUSAL_MODE`` unset, a developer running
with ``DEBUG=1`` sees why a handshake was refused (an ``error`` frame and the close code);
a production server (``DEBUG=0``) still answers HTTP 403 and tells the client nothing. The
handshake throttle stays a plain 403 even under DEBUG.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus

from secure_ws.codes import CloseCode, Reason
from tests.e2e.test_gate_e2e import open_ws, refusal_frame_and_close, refused_status

pytestmark = [pytest.mark.e2e, pytest.mark.servers]


async def test_debug_server_tells_the_developer_why(asgi_server: Callable[..., Any]) -> None:
    server = asgi_server(env={"DEBUG": "1"})
    async with await open_ws(server, "/ws/files/") as conn:  # no credentials
        frame, code = await refusal_frame_and_close(conn)
    assert frame == {"type": "error", "payload": {"code": Reason.CREDENTIALS_MISSING.value}}
    assert code == int(CloseCode.UNAUTHORIZED)
    async with await open_ws(server, "/ws/files/", origin="http://evil.example") as conn:
        frame, code = await refusal_frame_and_close(conn)
    assert frame["payload"]["code"] == Reason.ORIGIN_REFUSED.value
    assert code == int(CloseCode.FORBIDDEN)


async def test_production_server_answers_a_bare_403(asgi_server: Callable[..., Any]) -> None:
    server = asgi_server(env={"DEBUG": "0"})
    assert await refused_status(server, "/ws/files/") == 403
    assert await refused_status(server, "/ws/files/", origin="http://evil.example") == 403


async def test_debug_server_throttles_with_a_plain_403(asgi_server: Callable[..., Any]) -> None:
    server = asgi_server(
        env={
            "DEBUG": "1",
            "SECURE_WS_HANDSHAKE_RATE": "1",
            "SECURE_WS_KEY_PREFIX": f"swt-{uuid.uuid4().hex}",
        },
    )
    statuses = []
    for _ in range(40):  # the default burst is 20: the bucket empties well before the end
        try:
            async with await open_ws(server, "/ws/files/") as conn:
                await refusal_frame_and_close(conn)
            statuses.append("reason")
        except InvalidStatus as refused:
            statuses.append(str(refused.response.status_code))
    assert "reason" in statuses
    assert statuses[-1] == "403"
