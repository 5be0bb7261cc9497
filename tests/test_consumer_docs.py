"""The consumer example in docs/consumers.md works when pasted, and stays short."""

from __future__ import annotations

import re
import sys
import types
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from secure_ws.codes import ErrorCode
from secure_ws.state import close_redis
from secure_ws.testing import SecureCommunicator
from tests.consumer_helpers import unsaved_user

DOC = Path(__file__).resolve().parent.parent / "docs" / "consumers.md"


def example_source() -> str:
    text = DOC.read_text()
    match = re.search(r"<!-- example: consumer.*?-->\s*```python\n(.*?)```", text, re.S)
    assert match, "docs/consumers.md lost its consumer example"
    return match.group(1)


@pytest.fixture(scope="module")
def example() -> Iterator[types.ModuleType]:
    """The example as a module of its own, as if pasted into ``chat/consumers.py``."""
    module = types.ModuleType("docs_consumer_example")
    sys.modules[module.__name__] = module
    # dont_inherit: this file's ``from __future__ import annotations`` must not leak in.
    code = compile(example_source(), str(DOC), "exec", dont_inherit=True)
    exec(code, module.__dict__)
    yield module
    del sys.modules[module.__name__]


@pytest.fixture(autouse=True)
async def _close_shared_redis() -> AsyncIterator[None]:
    yield
    await close_redis()


def test_the_example_is_about_twenty_lines() -> None:
    code_lines = [line for line in example_source().splitlines() if line.strip()]
    assert len(code_lines) <= 22


async def test_the_pasted_example_serves_a_chat_room(
    example: Any, secure_ws_communicator: Callable[..., SecureCommunicator]
) -> None:
    consumer = example.ChatConsumer
    alice = secure_ws_communicator(consumer, user=unsaved_user(pk=9101, username="alice"))
    bob = secure_ws_communicator(consumer, user=unsaved_user(pk=9102, username="bob"))
    assert (await alice.connect())[0]
    assert (await bob.connect())[0]
    say = {"type": "say", "id": "1", "payload": {"room": "lobby", "text": "hi"}}
    frames = [await alice.request(say), await alice.receive_frame()]
    assert {"type": "ack", "id": "1", "payload": {}} in frames
    assert {"type": "line", "payload": {"user": "alice", "text": "hi"}} in frames
    await bob.request({"type": "say", "payload": {"room": "lobby", "text": "hello"}})
    assert await alice.receive_frame() == {
        "type": "line",
        "payload": {"user": "bob", "text": "hello"},
    }
    bad = await alice.request({"type": "say", "payload": {"room": "Lobby!", "text": ""}})
    assert bad["payload"]["code"] == ErrorCode.INVALID_MESSAGE
    assert consumer.message_rate == 5.0
