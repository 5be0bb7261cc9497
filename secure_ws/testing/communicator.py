"""Communicators for consumer tests: with the gate's output faked, or through the real gate."""

from __future__ import annotations

import json
import time
from typing import Any, cast

from channels.testing import WebsocketCommunicator

from secure_ws.codes import APP_SUBPROTOCOL, AuthMethod
from secure_ws.connection import SCOPE_KEY, ConnectionInfo
from secure_ws.gate.stack import secure_websocket
from secure_ws.testing.tokens import bearer_subprotocol

__all__ = ["SecureCommunicator", "connection_info_for", "gate_communicator"]

#: Where the helpers say the client connects from (a documentation address, RFC 5737).
CLIENT = ("192.0.2.10", 50000)


def connection_info_for(
    user: Any,
    *,
    path: str = "/ws/",
    token_exp: float | None = None,
    lifetime: float = 300.0,
    session_id: str | None = None,
) -> ConnectionInfo:
    """Return the :class:`ConnectionInfo` the gate leaves for ``user`` (``None``: anonymous).

    Args:
        user: A Django user; an authenticated one connects as if with a bearer token.
        path: The request path.
        token_exp: When the credential expires (a timestamp); default ``now + lifetime``.
        lifetime: Seconds until expiry when ``token_exp`` is not given.
        session_id: The login session (``sid``) the credential belongs to.
    """
    authenticated = user is not None and bool(user.is_authenticated)
    return ConnectionInfo(
        client_ip=CLIENT[0],
        scheme="ws",
        path=path,
        host="testserver",
        origin="http://testserver",
        user_agent="secure_ws.testing",
        auth_method=AuthMethod.SUBPROTOCOL if authenticated else AuthMethod.NONE,
        user_id=user.pk if authenticated else None,
        username=user.get_username() if authenticated else "",
        token_exp=(time.time() + lifetime) if token_exp is None else token_exp,
        session_id=session_id,
    )


class SecureCommunicator(WebsocketCommunicator):  # type: ignore[misc]
    """A ``WebsocketCommunicator`` whose scope looks like the gate's output for ``user``.

    It skips the gate (no origin, token or server needed) and offers ``secure-ws.v1``::

        comm = SecureCommunicator(ChatConsumer.as_asgi(), "/ws/chat/", user=alice)
        connected, subprotocol = await comm.connect()
        reply = await comm.request({"type": "say", "id": "1", "payload": {"text": "hi"}})

    Args:
        application: The consumer (``Consumer.as_asgi()``, or the class).
        path: The request path.
        user: The Django user the connection belongs to (``None``: anonymous).
        info: A ready :class:`ConnectionInfo` instead of the one built for ``user``.
        subprotocols: What the client offers (default ``["secure-ws.v1"]``).
        **info_kwargs: Passed to :func:`connection_info_for` (``token_exp``, ``session_id``...).
    """

    def __init__(
        self,
        application: Any,
        path: str = "/ws/",
        *,
        user: Any = None,
        info: ConnectionInfo | None = None,
        subprotocols: list[str] | None = None,
        **info_kwargs: Any,
    ) -> None:
        app = cast(Any, application).as_asgi() if isinstance(application, type) else application
        super().__init__(
            app, path, subprotocols=[APP_SUBPROTOCOL] if subprotocols is None else subprotocols
        )
        self.scope["user"] = user
        self.scope["client"] = list(CLIENT)
        self.scope[SCOPE_KEY] = info or connection_info_for(user, path=path, **info_kwargs)

    @property
    def connection(self) -> ConnectionInfo:
        """The connection's :class:`ConnectionInfo` (counters, close reason...)."""
        info: ConnectionInfo = self.scope[SCOPE_KEY]
        return info

    async def receive_frame(self, wait: float = 3) -> dict[str, Any]:
        """Return the server's next frame, decoded; fail (``AssertionError``) on a close."""
        output = await self.receive_output(wait)
        assert output["type"] == "websocket.send", output
        frame: dict[str, Any] = json.loads(output["text"])
        return frame

    async def receive_close(self, wait: float = 3) -> dict[str, Any]:
        """Return the server's next output, which must be the close (``{"code": ...}``)."""
        output: dict[str, Any] = await self.receive_output(wait)
        assert output["type"] == "websocket.close", output
        return output

    async def request(self, frame: dict[str, Any], wait: float = 3) -> dict[str, Any]:
        """Send ``frame`` (a ``{"type", "id"?, "payload"}`` dict) and return the next frame."""
        await self.send_json_to(frame)
        return await self.receive_frame(wait)


def gate_communicator(
    application: Any,
    path: str = "/ws/",
    *,
    token: str | None = None,
    origin: str | None = "http://testserver",
    host: str = "testserver",
    headers: list[tuple[bytes, bytes]] | None = None,
    subprotocols: list[str] | None = None,
    client: tuple[str, int] = CLIENT,
) -> WebsocketCommunicator:
    """Return a communicator whose handshake goes through the whole gate, in-process.

    ``application`` is wrapped in :func:`~secure_ws.secure_websocket` (pass your
    ``URLRouter``, or a consumer's ``as_asgi()``), so the test sees what a client would: the
    origin check against ``SECURE_WS``/``ALLOWED_HOSTS``, the credentials step, the caps.

    Args:
        application: The inner application (what you would pass to ``secure_websocket``).
        path: The request path.
        token: An access token, offered as the ``bearer.`` subprotocol (see
            :func:`~secure_ws.testing.access_token_for`); ``None`` connects without one.
        origin: The ``Origin`` header (``None``: no header, as a non-browser client).
        host: The ``Host`` header (must be in ``ALLOWED_HOSTS``).
        headers: More handshake headers.
        subprotocols: What the client offers; default ``secure-ws.v1`` plus the token's.
        client: The client address the ASGI server reports.
    """
    offered = [APP_SUBPROTOCOL] if subprotocols is None else list(subprotocols)
    if token is not None:
        offered.append(bearer_subprotocol(token))
    handshake = [(b"host", host.encode()), (b"sec-websocket-version", b"13")]
    if origin is not None:
        handshake.append((b"origin", origin.encode()))
    comm = WebsocketCommunicator(
        secure_websocket(application),
        path,
        headers=handshake + list(headers or ()),
        subprotocols=offered,
    )
    comm.scope["client"] = list(client)
    return comm
