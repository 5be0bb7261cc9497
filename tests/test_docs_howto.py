"""The code blocks of docs/howto/message-type.md and permission.md work as written."""

from __future__ import annotations

import re
import sys
import types
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Group

from secure_ws.codes import ErrorCode
from secure_ws.consumer.messages import ClientMessage, EmptyPayload, message_handler
from secure_ws.consumer.permissions import IsAuthenticated
from secure_ws.consumer.secure import SecureJsonWebsocketConsumer
from secure_ws.state import close_redis
from tests.consumer_helpers import communicator, request, unsaved_user

HOWTO = Path(__file__).resolve().parent.parent / "docs" / "howto"


def example(page: str, name: str) -> types.ModuleType:
    """The page's ``<!-- example: name -->`` block, run as a module of its own."""
    text = (HOWTO / page).read_text(encoding="utf-8")
    match = re.search(rf"<!-- example: {name} .*?-->\s*```python\n(.*?)```", text, re.S)
    assert match, f"docs/howto/{page} lost its {name} example"
    module = types.ModuleType(f"docs_howto_{name.replace('-', '_')}")
    sys.modules[module.__name__] = module
    # dont_inherit: this file's ``from __future__ import annotations`` must not leak in.
    exec(compile(match.group(1), str(HOWTO / page), "exec", dont_inherit=True), module.__dict__)
    return module


@pytest.fixture(scope="module")
def message_type() -> Iterator[types.ModuleType]:
    module = example("message-type.md", "message-type")
    yield module
    del sys.modules[module.__name__]


@pytest.fixture(scope="module")
def permission() -> Iterator[types.ModuleType]:
    module = example("permission.md", "permission")
    yield module
    del sys.modules[module.__name__]


@pytest.fixture(autouse=True)
async def _close_shared_redis() -> AsyncIterator[None]:
    yield
    await close_redis()


async def test_the_message_type_example_answers_and_refuses(message_type: Any) -> None:
    consumer = message_type.BoardConsumer
    assert "renamed" in consumer.server_messages
    comm = communicator(consumer, unsaved_user(pk=9201, username="alice"))
    assert (await comm.connect())[0]
    rename = {"type": "board.rename", "id": "7", "payload": {"old": "a", "new": "b"}}
    assert await request(comm, rename) == {"type": "renamed", "id": "7", "payload": {"name": "b"}}
    same = {"type": "board.rename", "id": "8", "payload": {"old": "a", "new": "a"}}
    refused = await request(comm, same)
    assert refused["payload"]["code"] == ErrorCode.INVALID_MESSAGE
    bad = {"type": "board.rename", "id": "9", "payload": {"old": "A!", "new": "b"}}
    assert (await request(comm, bad))["payload"]["code"] == ErrorCode.INVALID_MESSAGE
    await comm.disconnect()


@pytest.fixture
def editors(transactional_db: None) -> dict[str, Any]:
    from django.contrib.auth import get_user_model

    user_model = get_user_model()
    editor = user_model.objects.create_user("howto-editor", password="x" * 12)
    reader = user_model.objects.create_user("howto-reader", password="x" * 12)
    editor.groups.add(Group.objects.create(name="board-editors"))
    return {"editor": editor, "reader": reader}


async def test_the_permission_example_allows_only_the_group(
    permission: Any, editors: dict[str, Any]
) -> None:
    class Board(SecureJsonWebsocketConsumer):
        @message_handler(
            "board.touch", permissions=[IsAuthenticated, permission.InGroup("board-editors")]
        )
        async def handle_board_touch(self, message: ClientMessage[EmptyPayload]) -> None:
            await self.send_message("ack", None, id=message.id)

    touch = {"type": "board.touch", "id": "1"}
    editor = communicator(Board, editors["editor"])
    assert (await editor.connect())[0]
    assert (await request(editor, touch))["type"] == "ack"
    await editor.disconnect()
    reader = communicator(Board, editors["reader"])
    assert (await reader.connect())[0]
    assert (await request(reader, touch))["payload"]["code"] == ErrorCode.FORBIDDEN
    await reader.disconnect()
