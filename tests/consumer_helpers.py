"""This suite's consumer-test helpers, on top of :mod:`secure_ws.testing`.

:class:`~secure_ws.testing.SecureCommunicator` puts into the scope what the gate would; the
helpers here add the suite's defaults (client address, jti) and frame readers that take a
plain ``WebsocketCommunicator`` too.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from channels.testing import WebsocketCommunicator

from secure_ws.codes import AuthMethod, CloseCode, Reason
from secure_ws.connection import SCOPE_KEY, ConnectionInfo
from secure_ws.testing import SecureCommunicator

DEFAULT_PATH = "/ws/test/"


def gate_info(
    user: Any,
    *,
    path: str = DEFAULT_PATH,
    token_exp: float | None = None,
    session_id: str | None = None,
    lifetime: float = 300.0,
) -> ConnectionInfo:
    """The ConnectionInfo the gate leaves for an authenticated ``user``."""
    authenticated = user is not None and user.is_authenticated
    return ConnectionInfo(
        client_ip="127.0.0.1",
        scheme="ws",
        path=path,
        host="testserver",
        origin="http://testserver",
        user_agent="pytest",
        auth_method=AuthMethod.SUBPROTOCOL if authenticated else AuthMethod.NONE,
        user_id=user.pk if authenticated else None,
        username=user.get_username() if authenticated else "",
        token_exp=(time.time() + lifetime) if token_exp is None else token_exp,
        token_jti="jti-test",
        session_id=session_id,
    )


def communicator(
    consumer: Any,
    user: Any,
    *,
    path: str = DEFAULT_PATH,
    subprotocols: list[str] | None = None,
    info: ConnectionInfo | None = None,
    with_gate: bool = True,
    **info_kwargs: Any,
) -> SecureCommunicator:
    """A :class:`~secure_ws.testing.SecureCommunicator` with this suite's ``gate_info``."""
    comm = SecureCommunicator(
        consumer,
        path,
        user=user,
        subprotocols=subprotocols,
        info=info or gate_info(user, path=path, **info_kwargs),
    )
    if not with_gate:
        del comm.scope[SCOPE_KEY]
    comm.scope["client"] = ("127.0.0.1", 50000)
    return comm


async def receive_frame(comm: WebsocketCommunicator, wait: float = 3) -> dict[str, Any]:
    """The next frame the server sent, decoded; fails on a close."""
    output = await comm.receive_output(wait)
    assert output["type"] == "websocket.send", output
    frame: dict[str, Any] = json.loads(output["text"])
    return frame


async def receive_close(comm: WebsocketCommunicator, wait: float = 3) -> dict[str, Any]:
    """The next output, which must be the close."""
    output: dict[str, Any] = await comm.receive_output(wait)
    assert output["type"] == "websocket.close", output
    return output


async def error_then_close(
    comm: WebsocketCommunicator, wait: float = 3
) -> tuple[dict[str, Any], dict[str, Any]]:
    """An ``error`` frame followed by the close (how every server-side close looks)."""
    frame = await receive_frame(comm, wait)
    assert frame["type"] == "error", frame
    close = await receive_close(comm, wait)
    return frame, close


async def request(
    comm: WebsocketCommunicator, frame: dict[str, Any], wait: float = 3
) -> dict[str, Any]:
    """Send ``frame`` and return the server's next frame."""
    await comm.send_json_to(frame)
    return await receive_frame(comm, wait)


def unsaved_user(pk: int = 4242, username: str = "tester", **attrs: Any) -> Any:
    """An authenticated user object that needs no database (for pure protocol tests)."""
    from django.contrib.auth import get_user_model

    user = get_user_model()(pk=pk, username=username, is_active=True, **attrs)
    return user


class RecordingConnection:
    """A stand-in member of the connection registry that records what it is asked to do."""

    def __init__(self, user_id: int | str | None = None, session_id: str | None = None) -> None:
        self.connection = ConnectionInfo(user_id=user_id, session_id=session_id)  # type: ignore[arg-type]
        self.ends: asyncio.Queue[tuple[CloseCode, Reason]] = asyncio.Queue()
        self.events: list[dict[str, Any]] = []

    async def end_connection(self, code: CloseCode, reason: Reason) -> None:
        self.ends.put_nowait((code, reason))

    def deliver_event(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    async def ended(self, wait: float = 2.0) -> tuple[CloseCode, Reason] | None:
        """The close the registry asked for within ``wait`` seconds, or ``None``."""
        try:
            return await asyncio.wait_for(self.ends.get(), wait)
        except TimeoutError:
            return None


async def watch(user_id: int | str | None = None, session_id: str | None = None) -> Any:
    """Register a :class:`RecordingConnection` once revocations can reach this process."""
    from secure_ws.sessions.pubsub import ensure_subscribed

    conn = RecordingConnection(user_id, session_id)
    (await ensure_subscribed()).add(conn)
    return conn
