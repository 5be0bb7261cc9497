"""The ASGI applications under test, one per stack, all serving the same client protocol.

* ``floor_application``: a plain Channels ``AsyncJsonWebsocketConsumer``, no checks at all.
  Every ratio is taken against it.
* ``diy_application``: what a Channels tutorial builds: ``AllowedHostsOriginValidator`` and a
  small simplejwt middleware that decodes ``?token=`` and fetches the user with
  ``database_sync_to_async``; the consumer refuses anonymous users.
* ``catm_application``: what a user finds first on PyPI: channels-auth-token-middlewares'
  ``SimpleJWTAuthTokenMiddleware`` (``Authorization: Bearer``, the user fetched from the
  database by simplejwt's ``JWTAuthentication``) and the same consumer refusing anonymous
  users. No origin check, no caps, no audit.
* ``secure_application``: ``secure_websocket(URLRouter(...))`` with a
  ``SecureJsonWebsocketConsumer`` echo endpoint and the demo's ``FileEventConsumer``.

Each serves ``/ws/echo/`` (``echo`` and ``ping`` messages) and ``/ws/files/``
(``subscribe`` to a folder, then ``file.uploaded`` events), so one load generator drives them
all. Each is wrapped like ``project/asgi.py`` (``ProtocolTypeRouter`` with a lifespan
handler), because the uvicorn servers run with ``--lifespan on`` as deployed. Run one with
``daphne bench.apps:floor_application`` and ``bench.settings``.
"""

from __future__ import annotations

import os
from typing import Annotated, Any
from urllib.parse import parse_qs

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")

import django

django.setup()

from channels.db import database_sync_to_async  # noqa: E402
from channels.generic.websocket import AsyncJsonWebsocketConsumer  # noqa: E402
from channels.middleware import BaseMiddleware  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from channels_auth_token_middlewares.middleware import (  # noqa: E402
    SimpleJWTAuthTokenMiddleware,
)
from django.contrib.auth import get_user_model  # noqa: E402
from django.contrib.auth.models import AnonymousUser  # noqa: E402
from django.urls import path  # noqa: E402
from pydantic import StringConstraints  # noqa: E402
from rest_framework_simplejwt.exceptions import TokenError  # noqa: E402
from rest_framework_simplejwt.tokens import AccessToken  # noqa: E402

from secure_ws import secure_websocket  # noqa: E402
from secure_ws.codes import APP_SUBPROTOCOL  # noqa: E402
from secure_ws.consumer.messages import ClientMessage, Schema, message_handler  # noqa: E402
from secure_ws.consumer.secure import SecureJsonWebsocketConsumer  # noqa: E402
from secure_ws.contrib.files.consumer import FileEventConsumer  # noqa: E402
from secure_ws.shutdown import lifespan as secure_lifespan  # noqa: E402

#: The channel-layer group the plain consumers use for a folder (fan-out floor).
PLAIN_GROUP_PREFIX = "benchfolder."


class PlainConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    """The floor: echo, ping and folder subscriptions with no validation at all."""

    async def connect(self) -> None:
        if not await self.allowed():
            await self.close()
            return
        offered = self.scope.get("subprotocols") or []
        await self.accept(APP_SUBPROTOCOL if APP_SUBPROTOCOL in offered else None)

    async def allowed(self) -> bool:
        return True

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        kind = content.get("type")
        if kind == "echo":
            reply = {"type": "echo", "id": content.get("id"), "payload": content.get("payload")}
            await self.send_json(reply)
        elif kind == "ping":
            await self.send_json({"type": "pong", "id": content.get("id"), "payload": {}})
        elif kind == "subscribe":
            folder = content["payload"]["folder"]
            await self.channel_layer.group_add(PLAIN_GROUP_PREFIX + folder, self.channel_name)
            await self.send_json({"type": "ack", "id": content.get("id"), "payload": {}})

    async def file_uploaded(self, event: dict[str, Any]) -> None:
        await self.send_json({"type": "file.uploaded", "payload": event["payload"]})


class DiyConsumer(PlainConsumer):
    """The same consumer, refusing anonymous users (what the DIY middleware sets)."""

    async def allowed(self) -> bool:
        user = self.scope.get("user")
        return bool(user is not None and user.is_authenticated)


@database_sync_to_async  # type: ignore[misc]
def _get_user(user_id: Any) -> Any:
    try:
        return get_user_model().objects.get(pk=user_id)
    except get_user_model().DoesNotExist:
        return AnonymousUser()


class QueryStringJwtMiddleware(BaseMiddleware):  # type: ignore[misc]
    """The common do-it-yourself JWT middleware: decode ``?token=``, fetch the user."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        scope = dict(scope)
        scope["user"] = AnonymousUser()
        token = parse_qs(scope.get("query_string", b"").decode()).get("token", [None])[0]
        if token:
            try:
                access = AccessToken(token)  # type: ignore[arg-type]
                scope["user"] = await _get_user(access["user_id"])
            except TokenError:
                pass
        return await super().__call__(scope, receive, send)


class EchoPayload(Schema):
    """An ``echo`` payload: one bounded text field."""

    text: Annotated[str, StringConstraints(max_length=4096)]


class SecureEchoConsumer(SecureJsonWebsocketConsumer):
    """The validated consumer with one extra client type, ``echo``."""

    @message_handler("echo", schema=EchoPayload)
    async def handle_echo(self, message: ClientMessage[EchoPayload]) -> None:
        """Send the payload back."""
        await self.send_message("echo", message.payload, id=message.id)


def _plain_routes(consumer: type[PlainConsumer]) -> URLRouter:
    return URLRouter([path("ws/echo/", consumer.as_asgi()), path("ws/files/", consumer.as_asgi())])


async def plain_lifespan(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answer uvicorn's lifespan events (``--lifespan on``, as deployed) with nothing to do."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def _served(websocket: Any, lifespan: Any = plain_lifespan) -> ProtocolTypeRouter:
    """Route like ``project/asgi.py``: WebSockets to the stack, lifespan to its handler."""
    return ProtocolTypeRouter({"websocket": websocket, "lifespan": lifespan})


floor_application = _served(_plain_routes(PlainConsumer))
diy_application = _served(
    AllowedHostsOriginValidator(QueryStringJwtMiddleware(_plain_routes(DiyConsumer)))
)
catm_application = _served(SimpleJWTAuthTokenMiddleware(_plain_routes(DiyConsumer)))
secure_application = _served(
    secure_websocket(
        URLRouter(
            [
                path("ws/echo/", SecureEchoConsumer.as_asgi()),
                path("ws/files/", FileEventConsumer.as_asgi()),
            ]
        )
    ),
    secure_lifespan,
)
