"""A test-only ASGI application: the full gate in front of a tiny consumer.

The consumer accepts with ``secure-ws.v1``, reports what the gate put in the scope (never
a secret) as its first frame, echoes text frames, and stays open until the client leaves.
It keeps the gate's tests independent of the file-events consumer.
"""

from __future__ import annotations

import json
import os
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

from django.core.asgi import get_asgi_application

http_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from secure_ws.codes import APP_SUBPROTOCOL  # noqa: E402
from secure_ws.connection import get_connection_info  # noqa: E402
from secure_ws.gate.stack import secure_websocket  # noqa: E402


async def info_consumer(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Accept, report the gate's view of the connection, echo until disconnect."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    accept: dict[str, Any] = {"type": "websocket.accept"}
    if APP_SUBPROTOCOL in scope.get("subprotocols", ()):
        accept["subprotocol"] = APP_SUBPROTOCOL
    await send(accept)
    info = get_connection_info(scope)
    user = scope.get("user")
    report = {
        "client_ip": info.client_ip,
        "scheme": info.scheme,
        "origin": info.origin,
        "auth_method": info.auth_method.value,
        "user_id": info.user_id,
        "username": info.username,
        "authenticated": bool(user is not None and user.is_authenticated),
        "token_exp": info.token_exp,
        "token_jti": info.token_jti,
        "session_id": info.session_id,
        "connection_id": info.connection_id,
        "subprotocols": list(scope.get("subprotocols", [])),
    }
    await send({"type": "websocket.send", "text": json.dumps(report)})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message["type"] == "websocket.receive" and message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})


websocket_app = secure_websocket(URLRouter([path("ws/info/", info_consumer)]))

application = ProtocolTypeRouter({"http": http_app, "websocket": websocket_app})
