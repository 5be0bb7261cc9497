"""The handshake gate: one small ASGI middleware per step, composed by :func:`secure_websocket`."""
