"""Property tests: whatever a client sends, the consumer answers cleanly.

Every frame — arbitrary text, arbitrary JSON, mutated valid messages, binary — is answered
by well-formed ``secure-ws.v1`` envelopes or a clean close with a documented code; the
consumer never raises, and a connection that stays open still answers ``ping``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from secure_ws.codes import CloseCode, ErrorCode, Reason
from secure_ws.consumer.messages import MAX_CLIENT_ID_CHARS
from secure_ws.contrib.files.consumer import FileEventConsumer
from secure_ws.state import close_redis
from tests.consumer_helpers import communicator

SERVER_TYPES = set(FileEventConsumer.server_messages)
ERROR_CODES = {c.value for c in ErrorCode} | {r.value for r in Reason}
CLOSE_CODES = {int(c) for c in CloseCode}

PROPERTY_SETTINGS = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

VALID_FRAMES = [
    {"type": "ping", "id": "p"},
    {"type": "subscribe", "id": "s", "payload": {"folder": "team"}},
    {"type": "unsubscribe", "payload": {"folder": "team"}},
    {"type": "resync", "payload": {"folder": "team"}},
    {
        "type": "file_upload",
        "id": "u",
        "payload": {
            "folder": "team",
            "file_id": "0b7c3a3e-5a0c-4e36-9f55-3c1d3f8a9b10",
            "name": "report.pdf",
            "size": 10,
            "content_type": "application/pdf",
            "sha256": "b" * 64,
        },
    },
    {"type": "file_delete", "payload": {"folder": "team", "file_id": str(uuid.UUID(int=7))}},
    {"type": "auth.refresh", "payload": {"token": "x.y.z"}},
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)

type_names = st.sampled_from(
    [
        "ping",
        "subscribe",
        "file_upload",
        "auth.refresh",
        "websocket.disconnect",
        "websocket.receive",
        "secure_ws.revoke",
        "secure_ws.file_event",
        "handle_ping",
        "__init__",
        "close",
        "",
    ]
) | st.text(max_size=30)


@st.composite
def mutated_frames(draw: Any) -> str:
    """A valid frame's text with a few random edits."""
    text = json.dumps(draw(st.sampled_from(VALID_FRAMES)))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        position = draw(st.integers(min_value=0, max_value=len(text)))
        action = draw(st.sampled_from(["insert", "delete", "replace", "duplicate"]))
        snippet = draw(
            st.sampled_from(
                [
                    '"',
                    "{",
                    "}",
                    "[",
                    "]",
                    ",",
                    ":",
                    "\\",
                    "NaN",
                    "1e999",
                    "\x00",
                    "\u202e",
                    "-",
                    "null",
                ]
            )
        )
        if action == "insert":
            text = text[:position] + snippet + text[position:]
        elif action == "delete":
            text = text[:position] + text[position + 1 :]
        elif action == "replace":
            text = text[:position] + snippet + text[position + len(snippet) :]
        else:
            text = text[:position] + text[position:] + text[position:]
    return text


@st.composite
def envelopes(draw: Any) -> str:
    """Envelope-shaped objects with random types, ids and payloads."""
    frame: dict[str, Any] = {"type": draw(type_names)}
    if draw(st.booleans()):
        frame["id"] = draw(st.text(max_size=80) | st.integers() | st.none())
    if draw(st.booleans()):
        frame["payload"] = draw(json_values)
    if draw(st.booleans()):
        frame[draw(st.text(max_size=10))] = draw(json_values)
    return json.dumps(frame)


@st.composite
def payload_mutations(draw: Any) -> str:
    """Valid envelopes whose payload fields take arbitrary JSON values."""
    frame = json.loads(json.dumps(draw(st.sampled_from(VALID_FRAMES))))
    payload = frame.setdefault("payload", {})
    if payload:
        field = draw(st.sampled_from(sorted(payload)))
        payload[field] = draw(json_values)
    return json.dumps(frame)


def assert_well_formed(output: dict[str, Any]) -> None:
    if output["type"] == "websocket.close":
        assert output.get("code", 1000) in CLOSE_CODES
        return
    assert output["type"] == "websocket.send"
    frame = json.loads(output["text"])
    assert isinstance(frame, dict)
    assert set(frame) <= {"type", "id", "payload"}
    assert frame["type"] in SERVER_TYPES
    assert isinstance(frame["payload"], dict)
    if "id" in frame:
        assert isinstance(frame["id"], str)
        assert len(frame["id"]) <= MAX_CLIENT_ID_CHARS
    if frame["type"] == "error":
        assert frame["payload"]["code"] in ERROR_CODES


async def exchange(user: Any, frame: dict[str, Any]) -> None:
    """Open a connection, send one frame and a ping behind it, and check every answer.

    Frames are handled in order, so everything the first frame causes arrives before the
    ``pong`` (or the close): the frame was answered, and the connection still works.
    """
    comm = communicator(FileEventConsumer, user, path="/ws/files/")
    connected, _ = await comm.connect(timeout=10)
    assert connected
    await comm.send_input(frame)
    await comm.send_input({"type": "websocket.receive", "text": '{"type":"ping","id":"alive"}'})
    answers = 0
    while True:
        output = await comm.receive_output(10)
        assert_well_formed(output)
        if output["type"] == "websocket.close":
            break
        reply = json.loads(output["text"])
        if reply.get("id") == "alive" and reply["type"] == "pong":
            break
        answers += 1
    assert answers >= 1, "every frame gets an answer before the next one is handled"
    await comm.disconnect()


@pytest.fixture
def alice(demo_users: dict[str, Any]) -> Any:
    return demo_users["alice"]


@pytest.fixture(autouse=True)
async def _close_shared_redis() -> AsyncIterator[None]:
    yield
    await close_redis()


@PROPERTY_SETTINGS
@given(text=st.text(st.characters(exclude_categories=()), max_size=300))
async def test_arbitrary_text_is_answered_cleanly(alice: Any, text: str) -> None:
    await exchange(alice, {"type": "websocket.receive", "text": text})


@PROPERTY_SETTINGS
@given(text=mutated_frames())
async def test_mutated_valid_frames_are_answered_cleanly(alice: Any, text: str) -> None:
    await exchange(alice, {"type": "websocket.receive", "text": text})


@PROPERTY_SETTINGS
@given(text=envelopes())
async def test_arbitrary_envelopes_are_answered_cleanly(alice: Any, text: str) -> None:
    await exchange(alice, {"type": "websocket.receive", "text": text})


@PROPERTY_SETTINGS
@given(text=payload_mutations())
async def test_arbitrary_payload_values_are_answered_cleanly(alice: Any, text: str) -> None:
    await exchange(alice, {"type": "websocket.receive", "text": text})


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(max_size=200))
async def test_binary_frames_close_cleanly_with_1003(alice: Any, data: bytes) -> None:
    comm = communicator(FileEventConsumer, alice, path="/ws/files/")
    assert (await comm.connect())[0]
    await comm.send_input({"type": "websocket.receive", "bytes": data})
    error = await comm.receive_output(2)
    assert_well_formed(error)
    close = await comm.receive_output(2)
    assert close == {"type": "websocket.close", "code": 1003, "reason": "binary_not_allowed"}
    await comm.disconnect()
