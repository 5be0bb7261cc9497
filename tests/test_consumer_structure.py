"""The consumer's shape: one public base class that owns one slotted per-connection object.

These pin what the collapse of the three consumer layers promised: a reader finds the
connection's behaviour in ``SecureJsonWebsocketConsumer`` and the modules it calls (no
secure_ws base classes under it), and an idle connection carries nothing beyond what a
plain Channels consumer carries plus one ``ConnectionState`` (no per-connection
``__dict__`` there).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from channels.generic.websocket import AsyncWebsocketConsumer

import secure_ws

CONSUMER_DIR = Path(secure_ws.__file__).parent / "consumer"


def _our_classes(cls: type) -> list[str]:
    return [k.__qualname__ for k in cls.__mro__ if k.__module__.startswith("secure_ws.")]


def test_the_base_class_has_no_secure_ws_layers_under_it() -> None:
    assert _our_classes(secure_ws.SecureJsonWebsocketConsumer) == ["SecureJsonWebsocketConsumer"]


def test_file_event_consumer_is_a_direct_subclass_of_the_one_base() -> None:
    from secure_ws.contrib.files.consumer import FileEventConsumer

    assert _our_classes(FileEventConsumer) == ["FileEventConsumer", "SecureJsonWebsocketConsumer"]


def test_the_connection_state_is_slotted() -> None:
    state = secure_ws.SecureJsonWebsocketConsumer().state
    assert not hasattr(state, "__dict__")
    with pytest.raises(AttributeError):
        state.unexpected = 1  # type: ignore[attr-defined]


def test_a_consumer_carries_only_channels_attributes_and_its_state() -> None:
    """Per-connection data goes on the slotted state, not the consumer's ``__dict__``."""
    plain = set(vars(AsyncWebsocketConsumer()))
    ours = set(vars(secure_ws.SecureJsonWebsocketConsumer()))
    assert ours - plain == {"state"}


def test_every_consumer_module_is_under_the_line_limit() -> None:
    long = {
        path.name: n
        for path in CONSUMER_DIR.glob("*.py")
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > 400
    }
    assert long == {}
