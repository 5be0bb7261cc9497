"""A bare ASGI WebSocket application for the deployment test: it reports what reaches it.

Each text or binary message is answered with its size and logged as ``app received N``, so
the test can tell whether a message reached the application or was cut by daphne first.
No Django, no gate: the test is about the server's own limits.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

Message = dict[str, Any]


async def application(
    scope: dict[str, Any],
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    if scope["type"] != "websocket":
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            print(f"app disconnect {message.get('code')}", flush=True)
            return
        data = message.get("text") or message.get("bytes") or b""
        print(f"app received {len(data)}", flush=True)
        await send({"type": "websocket.send", "text": str(len(data))})
