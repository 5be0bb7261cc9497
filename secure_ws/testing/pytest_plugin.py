"""pytest fixtures for consumer tests (needs pytest-django and pytest-asyncio).

Enable them in your ``conftest.py``::

    pytest_plugins = ["secure_ws.testing.pytest_plugin"]

- ``secure_ws_communicator`` — build a :class:`~secure_ws.testing.SecureCommunicator`
  (the gate's output faked for a user);
- ``secure_ws_gate`` — build a communicator that goes through the whole gate in-process
  (:func:`~secure_ws.testing.gate_communicator`);
- ``secure_ws_token`` — :func:`~secure_ws.testing.access_token_for`.

Every communicator a fixture built is disconnected at teardown.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import pytest
import pytest_asyncio
from channels.testing import WebsocketCommunicator

if TYPE_CHECKING:
    from secure_ws.testing.communicator import SecureCommunicator


async def _disconnect_all(built: list[WebsocketCommunicator]) -> None:
    for comm in built:
        if comm.future is not None and not comm.future.done():
            await comm.disconnect()


@pytest_asyncio.fixture
async def secure_ws_communicator() -> AsyncIterator[Callable[..., SecureCommunicator]]:
    """A factory: ``secure_ws_communicator(Consumer.as_asgi(), "/ws/x/", user=alice)``."""
    # Imported here: pytest loads plugins before pytest-django configures Django, and
    # the communicator imports the gate (which reads settings).
    from secure_ws.testing.communicator import SecureCommunicator

    built: list[WebsocketCommunicator] = []

    def build(application: Any, path: str = "/ws/", **kwargs: Any) -> SecureCommunicator:
        comm = SecureCommunicator(application, path, **kwargs)
        built.append(comm)
        return comm

    yield build
    await _disconnect_all(built)


@pytest_asyncio.fixture
async def secure_ws_gate() -> AsyncIterator[Callable[..., WebsocketCommunicator]]:
    """A factory: ``secure_ws_gate(router, "/ws/x/", token=secure_ws_token(alice))``."""
    # Imported here: see secure_ws_communicator.
    from secure_ws.testing.communicator import gate_communicator

    built: list[WebsocketCommunicator] = []

    def build(application: Any, path: str = "/ws/", **kwargs: Any) -> WebsocketCommunicator:
        comm = gate_communicator(application, path, **kwargs)
        built.append(comm)
        return comm

    yield build
    await _disconnect_all(built)


@pytest.fixture
def secure_ws_token() -> Callable[..., str]:
    """:func:`~secure_ws.testing.access_token_for` as a fixture."""
    # Imported here: see secure_ws_communicator.
    from secure_ws.testing.tokens import access_token_for

    return access_token_for
