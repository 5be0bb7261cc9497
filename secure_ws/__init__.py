"""django-secure-ws: secure-by-default WebSockets for Django Channels.

The public API is imported lazily so that ``import secure_ws`` has no Django side effects.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "secure_websocket": "secure_ws.gate.stack",
    "SecureJsonWebsocketConsumer": "secure_ws.consumer.secure",
    "message_handler": "secure_ws.consumer.messages",
    "event_handler": "secure_ws.consumer.dispatch",
    "FileEventConsumer": "secure_ws.contrib.files.consumer",
    "publish_file_event": "secure_ws.contrib.files.events",
    "get_settings": "secure_ws.conf",
}

__all__ = [
    "FileEventConsumer",
    "SecureJsonWebsocketConsumer",
    "__version__",
    "event_handler",
    "get_settings",
    "message_handler",
    "publish_file_event",
    "secure_websocket",
]

if TYPE_CHECKING:
    from secure_ws.conf import get_settings
    from secure_ws.consumer.dispatch import event_handler
    from secure_ws.consumer.messages import message_handler
    from secure_ws.consumer.secure import SecureJsonWebsocketConsumer
    from secure_ws.contrib.files.consumer import FileEventConsumer
    from secure_ws.contrib.files.events import publish_file_event
    from secure_ws.gate.stack import secure_websocket


def __getattr__(name: str) -> Any:
    try:
        module = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'secure_ws' has no attribute {name!r}") from None
    return getattr(import_module(module), name)
