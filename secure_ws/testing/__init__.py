"""Test helpers for projects that use secure_ws (public API).

- :class:`SecureCommunicator` — a ``channels.testing.WebsocketCommunicator`` for a
  :class:`~secure_ws.SecureJsonWebsocketConsumer`: it offers ``secure-ws.v1`` and fills
  ``scope["secure_ws"]`` with the :class:`~secure_ws.connection.ConnectionInfo` the gate
  would leave for a user, so a consumer test needs no gate, no token and no server;
- :func:`gate_communicator` — a communicator that goes through the whole gate in-process
  (origin, credentials, caps), with a real access token;
- :func:`access_token_for` and :func:`bearer_subprotocol` — token helpers;
- :mod:`secure_ws.testing.pytest_plugin` — fixtures for both
  (``pytest_plugins = ["secure_ws.testing.pytest_plugin"]``).

See "Testing your consumers" in docs/consumers.md.
"""

from __future__ import annotations

from secure_ws.testing.communicator import (
    SecureCommunicator,
    connection_info_for,
    gate_communicator,
)
from secure_ws.testing.tokens import access_token_for, bearer_subprotocol

__all__ = [
    "SecureCommunicator",
    "access_token_for",
    "bearer_subprotocol",
    "connection_info_for",
    "gate_communicator",
]
