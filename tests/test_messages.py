"""The envelope, the registry and the frame decoder: specification by example."""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any

import pytest
from pydantic import StringConstraints

from secure_ws.codes import ErrorCode
from secure_ws.consumer.limits import SlidingWindowCounter, TokenBucket
from secure_ws.consumer.messages import (
    MAX_CLIENT_ID_CHARS,
    ClientMessage,
    FrameRejected,
    MessageRegistry,
    Schema,
    json_depth_exceeds,
    message_handler,
)

pytestmark = pytest.mark.unit


class SayPayload(Schema):
    text: Annotated[str, StringConstraints(max_length=20)]
    count: int = 1


class Declared:
    @message_handler("say", schema=SayPayload)
    async def handle_say(self, message: ClientMessage[SayPayload]) -> None:
        """Say something."""

    @message_handler("ping")
    async def handle_ping(self, message: ClientMessage[Any]) -> None:
        """Ping."""


registry = MessageRegistry.collect(Declared)


def decode(frame: Any, depth: int = 16) -> ClientMessage[Any]:
    text = frame if isinstance(frame, str) else json.dumps(frame)
    return registry.decode(text, max_depth=depth)


def rejected(frame: Any, depth: int = 16) -> FrameRejected:
    with pytest.raises(FrameRejected) as info:
        decode(frame, depth)
    return info.value


def test_declared_type_decodes_into_its_schema() -> None:
    message = decode({"type": "say", "id": "c1", "payload": {"text": "hi"}})
    assert message.type == "say"
    assert message.id == "c1"
    assert isinstance(message.payload, SayPayload)
    assert message.payload.count == 1


def test_payload_may_be_omitted_when_the_schema_has_no_required_field() -> None:
    assert decode({"type": "ping"}).type == "ping"


def test_unknown_type_is_refused_and_the_client_id_is_kept() -> None:
    error = rejected({"type": "websocket.disconnect", "id": "abc"})
    assert error.code is ErrorCode.UNKNOWN_TYPE
    assert error.client_id == "abc"


def test_unknown_type_reply_never_quotes_the_type() -> None:
    error = rejected({"type": "<script>x</script>"})
    assert error.code is ErrorCode.UNKNOWN_TYPE
    assert "<script>" not in json.dumps([error.detail, error.errors])


def test_missing_type_is_an_invalid_message() -> None:
    error = rejected({"payload": {}})
    assert error.code is ErrorCode.INVALID_MESSAGE
    assert error.errors == [{"loc": ["type"], "msg": "Field required", "type": "missing"}]


@pytest.mark.parametrize("frame", ["", "nope", "{", '{"type": "ping",}', "\x00"])
def test_text_that_is_not_json_is_invalid_json(frame: str) -> None:
    assert rejected(frame).code is ErrorCode.INVALID_JSON


@pytest.mark.parametrize(
    "frame", ["\ud800", '{"type": "ping", "id": "\udfff"}', '{"type": "NaN\ud800"}']
)
def test_text_that_is_not_valid_unicode_is_invalid_json(frame: str) -> None:
    assert rejected(frame).code is ErrorCode.INVALID_JSON


@pytest.mark.parametrize("frame", ["[]", "1", '"ping"', "null", "true"])
def test_json_that_is_not_an_object_is_an_invalid_message(frame: str) -> None:
    assert rejected(frame).code is ErrorCode.INVALID_MESSAGE


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_refused_even_where_any_value_would_fit(literal: str) -> None:
    error = rejected('{"type": "say", "payload": {"text": "a", "count": ' + literal + "}}")
    assert error.code is ErrorCode.INVALID_JSON


def test_nan_inside_a_string_is_fine() -> None:
    assert decode({"type": "say", "payload": {"text": "NaN Infinity"}}).payload.text


def test_strict_types_refuse_coercion() -> None:
    error = rejected({"type": "say", "payload": {"text": "a", "count": "1"}})
    assert error.code is ErrorCode.INVALID_MESSAGE
    assert error.errors is not None
    assert error.errors[0]["loc"] == ["payload", "count"]
    assert error.errors[0]["type"] == "int_type"


def test_extra_keys_are_refused_and_their_names_are_not_echoed_as_markup() -> None:
    error = rejected({"type": "say", "payload": {"text": "a", "<img src=x onerror=1>": 1}})
    assert error.errors == [
        {
            "loc": ["payload", "<key>"],
            "msg": "Extra inputs are not permitted",
            "type": "extra_forbidden",
        }
    ]


def test_field_errors_never_contain_the_input_value() -> None:
    evil = "<script>alert(1)</script>"
    error = rejected({"type": "say", "payload": {"text": evil * 3}})
    assert error.code is ErrorCode.INVALID_MESSAGE
    assert evil not in json.dumps(error.errors)
    assert error.errors is not None
    assert set(error.errors[0]) == {"loc", "msg", "type"}


def test_uuid_errors_do_not_quote_the_offending_character() -> None:
    class WithId(Schema):
        file_id: uuid.UUID

    class Consumer:
        @message_handler("get", schema=WithId)
        async def handle_get(self, message: ClientMessage[WithId]) -> None:
            """Get."""

    local = MessageRegistry.collect(Consumer)
    with pytest.raises(FrameRejected) as info:
        local.decode('{"type": "get", "payload": {"file_id": "<b>"}}', max_depth=8)
    assert "<" not in json.dumps(info.value.errors)


def test_client_id_longer_than_64_chars_is_refused_and_not_echoed() -> None:
    long_id = "x" * (MAX_CLIENT_ID_CHARS + 1)
    error = rejected({"type": "ping", "id": long_id})
    assert error.code is ErrorCode.INVALID_MESSAGE
    assert error.client_id is None


def test_client_id_must_be_a_string() -> None:
    assert rejected({"type": "ping", "id": 5}).code is ErrorCode.INVALID_MESSAGE


def test_nesting_deeper_than_the_limit_is_refused_before_parsing() -> None:
    deep = '{"type": "say", "payload": {"text": "a", "x": ' + "[" * 50 + "]" * 50 + "}}"
    error = rejected(deep, depth=16)
    assert error.code is ErrorCode.INVALID_MESSAGE
    assert error.detail == "JSON nested too deeply"


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    assert not json_depth_exceeds('{"a": "[[[[[[[[[[[[\\"[[[["}', 3)
    assert json_depth_exceeds('{"a": [[[1]]]}', 3)


def test_handler_must_be_named_after_its_type() -> None:
    with pytest.raises(TypeError, match="handle_say"):

        @message_handler("say")
        async def say(self: Any, message: Any) -> None: ...


def test_handler_must_be_a_coroutine() -> None:
    with pytest.raises(TypeError, match="async def"):

        @message_handler("say")
        def handle_say(self: Any, message: Any) -> None: ...


@pytest.mark.parametrize("name", ["", "Say", "_x", "a..b", "a b", "x" * 65, "websocket-x"])
def test_type_names_are_lowercase_words(name: str) -> None:
    with pytest.raises(TypeError):
        message_handler(name)


def test_two_types_mapping_to_one_handler_name_are_refused() -> None:
    class Twice:
        @message_handler("a.b")
        async def handle_a_b(self, message: Any) -> None: ...

    class Again(Twice):
        @message_handler("a_b")
        async def handle_a_b(self, message: Any) -> None: ...

    with pytest.raises(TypeError, match="share"):
        MessageRegistry.collect(type("Both", (Again,), {"x": Twice.__dict__["handle_a_b"]}))


def test_token_bucket_allows_a_burst_then_refills_at_its_rate() -> None:
    bucket = TokenBucket(rate=2, capacity=3, now=0.0)
    assert [bucket.allow(now=0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.allow(now=0.5)
    assert not bucket.allow(now=0.5)
    assert bucket.allow(1.0, now=10.0)
    assert bucket.tokens <= 3


def test_sliding_window_counts_only_recent_events() -> None:
    window = SlidingWindowCounter(limit=3, window=10)
    assert not window.add(now=0.0)
    assert not window.add(now=1.0)
    assert window.add(now=2.0)
    slow = SlidingWindowCounter(limit=3, window=10)
    assert not slow.add(now=0.0)
    assert not slow.add(now=20.0)
    assert not slow.add(now=40.0)
    assert slow.count(now=41.0) == 1
