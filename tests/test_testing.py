"""secure_ws.testing: the public helpers a project tests its consumers with.

The gate fixture runs the real gate in-process, so what it accepts and refuses is the
gate's own decision: a real access token, a foreign origin, no credential.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator

from secure_ws import ClientMessage, SecureJsonWebsocketConsumer, message_handler
from secure_ws.codes import APP_SUBPROTOCOL, CloseCode
from secure_ws.consumer.messages import EmptyPayload
from secure_ws.state import close_redis
from secure_ws.testing import SecureCommunicator, access_token_for, bearer_subprotocol
from tests.consumer_helpers import unsaved_user


class WhoAmI(SecureJsonWebsocketConsumer):
    @message_handler("whoami", schema=EmptyPayload)
    async def handle_whoami(self, message: ClientMessage[EmptyPayload]) -> None:
        await self.send_message("you", {"user": self.connection.username}, id=message.id)


@pytest.fixture(autouse=True)
async def _close_shared_redis() -> AsyncIterator[None]:
    yield
    await close_redis()


async def test_secure_communicator_fills_the_gate_output(
    secure_ws_communicator: Callable[..., SecureCommunicator],
) -> None:
    comm = secure_ws_communicator(WhoAmI, "/ws/who/", user=unsaved_user(username="carol"))
    connected, subprotocol = await comm.connect()
    assert connected
    assert subprotocol == APP_SUBPROTOCOL
    reply = await comm.request({"type": "whoami", "id": "1", "payload": {}})
    assert reply == {"type": "you", "id": "1", "payload": {"user": "carol"}}
    assert comm.connection.messages_in == 1


async def test_secure_communicator_anonymous_is_refused_under_require_authentication(
    secure_ws_communicator: Callable[..., SecureCommunicator],
) -> None:
    comm = secure_ws_communicator(WhoAmI, user=None)
    assert not (await comm.connect())[0]


async def test_gate_accepts_a_real_token(
    demo_users: dict[str, Any],
    secure_ws_gate: Callable[..., WebsocketCommunicator],
    secure_ws_token: Callable[..., str],
    settings: Any,
) -> None:
    settings.ALLOWED_HOSTS = ["testserver"]
    settings.SECURE_WS = {**settings.SECURE_WS, "ALLOWED_ORIGINS": ["http://testserver"]}
    alice = demo_users["alice"]
    comm = secure_ws_gate(WhoAmI.as_asgi(), "/ws/who/", token=secure_ws_token(alice))
    connected, subprotocol = await comm.connect()
    assert connected
    assert subprotocol == APP_SUBPROTOCOL
    await comm.send_json_to({"type": "whoami", "id": "1", "payload": {}})
    assert await comm.receive_json_from() == {
        "type": "you",
        "id": "1",
        "payload": {"user": "alice"},
    }


@pytest.mark.parametrize("case", ["no_token", "foreign_origin", "garbage_token"])
async def test_gate_refuses_what_a_client_would_be_refused(
    case: str,
    demo_users: dict[str, Any],
    secure_ws_gate: Callable[..., WebsocketCommunicator],
    settings: Any,
) -> None:
    settings.ALLOWED_HOSTS = ["testserver"]
    settings.SECURE_WS = {**settings.SECURE_WS, "ALLOWED_ORIGINS": ["http://testserver"]}
    token = access_token_for(demo_users["alice"])
    kwargs: dict[str, Any] = {
        "no_token": {},
        "foreign_origin": {"token": token, "origin": "https://evil.example"},
        "garbage_token": {"subprotocols": [APP_SUBPROTOCOL, bearer_subprotocol("x.y.z")]},
    }[case]
    comm = secure_ws_gate(WhoAmI.as_asgi(), "/ws/who/", **kwargs)
    connected, code = await comm.connect()
    assert not connected
    assert code == CloseCode.NORMAL  # channels reports a refused handshake as 1000
