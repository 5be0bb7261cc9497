"""ASGI applications for the route-walker check: wrapped, unwrapped and half-wrapped."""

from __future__ import annotations

from channels.auth import AuthMiddlewareStack
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.routing import ProtocolTypeRouter, URLRouter
from channels.security.websocket import AllowedHostsOriginValidator
from django.urls import path, re_path

from secure_ws.gate.credentials import CredentialsMiddleware
from secure_ws.gate.origin import OriginMiddleware
from secure_ws.gate.stack import secure_websocket


class EchoConsumer(AsyncWebsocketConsumer):
    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        await self.send(text_data=text_data)


echo = EchoConsumer.as_asgi()

#: Channels' own stack only: cookies and sessions, no secure_ws gate.
unwrapped = ProtocolTypeRouter(
    {
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter([path("ws/chat/", echo)]))
        )
    }
)

#: One nested route wrapped, one raw route next to it.
mixed = ProtocolTypeRouter(
    {
        "websocket": URLRouter(
            [
                path("ws/safe/", secure_websocket(URLRouter([path("", echo)]))),
                re_path(r"^ws/raw/(?P<room>\w+)/$", echo),
            ]
        )
    }
)

#: The gate's steps composed by hand, origin check switched off on the instance.
origin_off = ProtocolTypeRouter(
    {
        "websocket": OriginMiddleware(
            CredentialsMiddleware(URLRouter([path("ws/api/", echo)])), check_origin=False
        )
    }
)

#: The gate's steps composed by hand, both on.
hand_built = ProtocolTypeRouter(
    {"websocket": OriginMiddleware(CredentialsMiddleware(URLRouter([path("ws/api/", echo)])))}
)

#: Only HTTP: nothing to verify.
http_only = ProtocolTypeRouter({})


def __getattr__(name: str) -> object:
    if name == "broken":
        raise RuntimeError("import-time failure of an ASGI module")
    raise AttributeError(name)
