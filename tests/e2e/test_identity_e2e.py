"""Identity follows every connection (issue 11): real servers, ``websockets``, Redis, PostgreSQL.

Whatever the credential (subprotocol JWT, ticket, Django session), the connection carries
the identity behind it: it expires with it, closes when its session logs out, and the HTTP
side (ticket view, API, token refresh) refuses exactly what the gate refuses. Every test
runs on daphne and on uvicorn (``servers`` marker): none of this depends on the server.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.middleware.csrf import _get_new_csrf_string
from django.test import Client
from rest_framework_simplejwt.tokens import AccessToken
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from secure_ws.codes import APP_SUBPROTOCOL, CloseCode, Reason
from tests.conftest import DEMO_PASSWORD, ServerProcess
from tests.test_revocation import in_thread

pytestmark = [pytest.mark.e2e, pytest.mark.servers, pytest.mark.usefixtures("demo_users")]

WS_PATH = "/ws/files/"
#: Guards against hangs only; no test asserts how fast anything is.
HANG_GUARD = 20


def _http(
    server: Any, method: str, path: str, body: dict[str, Any] | None = None, **headers: str
) -> tuple[int, dict[str, Any]]:
    data = json.dumps(body).encode() if body is not None else None
    if data is not None:
        headers.setdefault("Content-Type", "application/json")
    request = urllib.request.Request(
        server.http_url + path, data=data, method=method, headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=HANG_GUARD) as response:
            return int(response.status), dict(json.loads(response.read() or b"{}"))
    except urllib.error.HTTPError as exc:
        with exc:
            return int(exc.code), dict(json.loads(exc.read() or b"{}"))


async def http(
    server: Any, method: str, path: str, body: dict[str, Any] | None = None, **headers: str
) -> tuple[int, dict[str, Any]]:
    """One HTTP request to the server process (in a thread): status and JSON body."""
    return await asyncio.to_thread(_http, server, method, path, body, **headers)


async def login(server: Any, username: str) -> dict[str, str]:
    status, pair = await http(
        server, "POST", "/api/token/", {"username": username, "password": DEMO_PASSWORD}
    )
    assert status == 200, pair
    return {key: str(value) for key, value in pair.items()}


async def ticket_for(server: Any, access: str) -> str:
    status, body = await http(
        server,
        "POST",
        "/api/ws-ticket/",
        Authorization=f"Bearer {access}",
        Origin=server.origin,
    )
    assert status == 201, body
    return str(body["ticket"])


async def open_ws(server: Any, path: str = WS_PATH, **kwargs: Any) -> ClientConnection:
    kwargs.setdefault("subprotocols", [APP_SUBPROTOCOL])
    return await connect(
        server.ws_url + path, origin=server.origin, proxy=None, open_timeout=HANG_GUARD, **kwargs
    )


async def until_closed(conn: ClientConnection) -> tuple[list[dict[str, Any]], int | None]:
    """Read frames until the server closes; return them and the close code."""
    frames: list[dict[str, Any]] = []
    try:
        while True:
            frames.append(json.loads(await asyncio.wait_for(conn.recv(), HANG_GUARD)))
    except ConnectionClosed:
        pass
    return frames, conn.close_code


def errors(frames: list[dict[str, Any]]) -> list[str]:
    return [frame["payload"]["code"] for frame in frames if frame["type"] == "error"]


async def ask(conn: ClientConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """Send ``frame`` with an id and return the reply carrying that id."""
    frame_id = frame.setdefault("id", uuid.uuid4().hex)
    await conn.send(json.dumps(frame))
    while True:
        reply = json.loads(await asyncio.wait_for(conn.recv(), HANG_GUARD))
        if reply.get("id") == frame_id:
            return dict(reply)


async def handshake_status(server: Any, token: str) -> int:
    try:
        conn = await open_ws(server, subprotocols=[APP_SUBPROTOCOL, f"bearer.{token}"])
    except InvalidStatus as exc:
        return int(exc.response.status_code)
    await conn.close()
    return 101


async def logged(server: Any, text: str) -> None:
    """Wait until the server's log contains ``text`` (it is written as the refusal goes out)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + HANG_GUARD
    while text not in server.log():
        assert loop.time() < deadline, f"{text!r} never logged"
        await asyncio.sleep(0.05)


@pytest.fixture(scope="module")
def demo_server(shared_asgi_server: Callable[..., ServerProcess]) -> ServerProcess:
    """The demo project, one process per kind for the module."""
    return shared_asgi_server(settings_module="tests.e2e.shared_settings")


@pytest.fixture
def server(demo_server: ServerProcess, transactional_db: None) -> ServerProcess:
    return demo_server.since_now()


# -- tickets --------------------------------------------------------------------------------


async def test_ticket_connection_expires_with_its_issuing_token_and_refreshes(
    server: Any, demo_users: dict[str, Any], token_for: Any
) -> None:
    short = AccessToken.for_user(demo_users["alice"])
    short.set_exp(lifetime=timedelta(seconds=4))
    expiring = await open_ws(server, f"{WS_PATH}?ticket={await ticket_for(server, str(short))}")
    refreshed = await open_ws(server, f"{WS_PATH}?ticket={await ticket_for(server, str(short))}")
    reply = await ask(
        refreshed, {"type": "auth.refresh", "payload": {"token": token_for(demo_users["alice"])}}
    )
    assert reply["type"] == "ack"
    assert reply["payload"]["expires_in"] > 60

    frames, code = await until_closed(expiring)
    assert "auth.expiring" in [frame["type"] for frame in frames]
    assert errors(frames) == [Reason.TOKEN_EXPIRED.value]
    assert code == CloseCode.UNAUTHORIZED
    # The refreshed one outlived the token that opened it.
    assert (await ask(refreshed, {"type": "ping", "payload": {}}))["type"] == "pong"
    await refreshed.close()


async def test_ticket_connection_closes_4403_when_its_login_session_logs_out(
    server: Any,
) -> None:
    pair = await login(server, "bob")
    conn = await open_ws(server, f"{WS_PATH}?ticket={await ticket_for(server, pair['access'])}")
    status, _ = await http(server, "POST", "/api/token/blacklist/", {"refresh": pair["refresh"]})
    assert status == 200
    frames, code = await until_closed(conn)
    assert errors(frames) == [Reason.REVOKED.value]
    assert code == CloseCode.FORBIDDEN


async def _revoked_session_token(server: Any, user: Any) -> str:
    pair = await login(server, user.username)
    status, _ = await http(server, "POST", "/api/token/blacklist/", {"refresh": pair["refresh"]})
    assert status == 200
    return pair["access"]


async def _old_password_token(server: Any, user: Any) -> str:
    access = (await login(server, user.username))["access"]

    def change() -> None:
        user.set_password("another-password-456")
        user.save()

    await in_thread(change)()
    return access


async def _inactive_user_token(server: Any, user: Any) -> str:
    access = (await login(server, user.username))["access"]

    def deactivate() -> None:
        user.is_active = False
        user.save()

    await in_thread(deactivate)()
    return access


@pytest.mark.parametrize(
    ("make_token", "reason"),
    [
        (_revoked_session_token, Reason.TOKEN_REVOKED),
        (_old_password_token, Reason.TOKEN_REVOKED),
        (_inactive_user_token, Reason.USER_INACTIVE),
    ],
    ids=["revoked-session", "old-password", "inactive-user"],
)
async def test_ticket_view_refuses_what_the_gate_refuses_with_the_same_reason(
    server: Any, demo_users: dict[str, Any], make_token: Any, reason: Reason
) -> None:
    access = await make_token(server, demo_users["carol"])
    status, body = await http(
        server, "POST", "/api/ws-ticket/", Authorization=f"Bearer {access}", Origin=server.origin
    )
    assert (status, body.get("code")) == (401, reason.value)
    assert "ticket" not in body
    assert await handshake_status(server, access) == 403
    await logged(server, f"reason={reason.value}")


# -- password change ------------------------------------------------------------------------


async def test_password_change_revokes_old_access_and_refresh_tokens_everywhere(
    server: Any, demo_users: dict[str, Any]
) -> None:
    alice = demo_users["alice"]
    old = await login(server, "alice")
    assert await handshake_status(server, old["access"]) == 101

    def change() -> None:
        alice.set_password("another-password-456")
        alice.save()

    await in_thread(change)()
    assert await handshake_status(server, old["access"]) == 403
    status, body = await http(
        server, "GET", "/api/folders/", Authorization=f"Bearer {old['access']}"
    )
    assert (status, body.get("code")) == (401, Reason.TOKEN_REVOKED.value)
    status, body = await http(server, "POST", "/api/token/refresh/", {"refresh": old["refresh"]})
    assert (status, body.get("code")) == (401, Reason.TOKEN_REVOKED.value)
    assert "access" not in body
    # The new password's tokens work everywhere.
    status, _ = await http(
        server, "POST", "/api/token/", {"username": "alice", "password": "another-password-456"}
    )
    assert status == 200


# -- Django sessions (ALLOW_SESSION_AUTH) ---------------------------------------------------


@pytest.fixture
def session_server(asgi_server: Callable[..., Any]) -> Any:
    return asgi_server(settings_module="tests.browser.session_auth_settings")


def _logged_in(username: str) -> Client:
    client = Client()
    assert client.login(username=username, password=DEMO_PASSWORD)
    return client


async def _session_ticket(server: Any, session_key: str) -> str:
    csrf = _get_new_csrf_string()
    status, body = await http(
        server,
        "POST",
        "/api/ws-ticket/",
        Cookie=f"sessionid={session_key}; csrftoken={csrf}",
        Origin=server.origin,
        **{"X-CSRFToken": csrf},
    )
    assert status == 201, body
    return str(body["ticket"])


async def test_session_logout_closes_its_session_socket_and_session_ticket_socket(
    session_server: Any,
) -> None:
    client = await in_thread(_logged_in)("alice")
    other = await in_thread(_logged_in)("alice")
    key, other_key = client.session.session_key, other.session.session_key
    by_cookie = await open_ws(session_server, additional_headers={"Cookie": f"sessionid={key}"})
    ticket = await _session_ticket(session_server, key)
    by_ticket = await open_ws(session_server, f"{WS_PATH}?ticket={ticket}")
    untouched = await open_ws(
        session_server, additional_headers={"Cookie": f"sessionid={other_key}"}
    )

    await in_thread(client.logout)()
    for conn in (by_cookie, by_ticket):
        frames, code = await until_closed(conn)
        assert errors(frames) == [Reason.REVOKED.value]
        assert code == CloseCode.FORBIDDEN
    # Another session of the same user stays open.
    assert (await ask(untouched, {"type": "ping", "payload": {}}))["type"] == "pong"
    await untouched.close()


async def test_session_socket_closes_4401_when_the_session_expires(session_server: Any) -> None:
    client = await in_thread(_logged_in)("bob")

    def expire_soon() -> str:
        session = client.session
        session.set_expiry(3)
        session.save()
        return str(session.session_key)

    key = await in_thread(expire_soon)()
    conn = await open_ws(session_server, additional_headers={"Cookie": f"sessionid={key}"})
    frames, code = await until_closed(conn)
    assert "auth.expiring" in [frame["type"] for frame in frames]
    assert errors(frames) == [Reason.SESSION_EXPIRED.value]
    assert code == CloseCode.UNAUTHORIZED


# -- MAX_CONNECTION_AGE ---------------------------------------------------------------------


async def test_connection_without_credential_expiry_closes_4401_at_max_age(
    asgi_server: Callable[..., Any],
) -> None:
    server = asgi_server(settings_module="tests.e2e.max_age_settings")
    conn = await open_ws(server)
    frames, code = await until_closed(conn)
    assert errors(frames)[-1:] == [Reason.CONNECTION_TOO_OLD.value]
    assert code == CloseCode.UNAUTHORIZED
