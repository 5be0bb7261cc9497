"""django-secure-ws: secure-by-default WebSockets for Django Channels.

The public API (the names below) is imported on first use, so that ``import secure_ws``
has no Django side effects and works before ``django.setup()``::

    from secure_ws import SecureJsonWebsocketConsumer, message_handler, secure_websocket

Package layout, in the order a connection meets it: ``gate`` (the handshake steps),
``consumer`` (the base consumer and what it owns), ``sessions`` (identity after the
handshake: registry, revocation), ``audit``, ``api`` (the DRF side), ``probe`` (the
scanner) and ``contrib.files`` (an optional sub-app). See docs/architecture.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "ClientMessage",
    "Schema",
    "SecureJsonWebsocketConsumer",
    "__version__",
    "event_handler",
    "get_settings",
    "message_handler",
    "secure_websocket",
]

if TYPE_CHECKING:
    from secure_ws.conf import get_settings
    from secure_ws.consumer.loop import event_handler
    from secure_ws.consumer.messages import ClientMessage, Schema, message_handler
    from secure_ws.consumer.secure import SecureJsonWebsocketConsumer
    from secure_ws.gate.stack import secure_websocket


def __getattr__(name: str) -> Any:
    # The imports are here, not at the top, because these modules need configured Django
    # settings and ``import secure_ws`` must not (PEP 562 lazy attributes).
    if name == "secure_websocket":
        from secure_ws.gate.stack import secure_websocket

        return secure_websocket
    if name == "SecureJsonWebsocketConsumer":
        from secure_ws.consumer.secure import SecureJsonWebsocketConsumer

        return SecureJsonWebsocketConsumer
    if name in ("message_handler", "ClientMessage", "Schema"):
        from secure_ws.consumer import messages

        return getattr(messages, name)
    if name == "event_handler":
        from secure_ws.consumer.loop import event_handler

        return event_handler
    if name == "get_settings":
        from secure_ws.conf import get_settings

        return get_settings
    raise AttributeError(f"module 'secure_ws' has no attribute {name!r}")
