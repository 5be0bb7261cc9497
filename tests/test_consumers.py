"""SecureJsonWebsocketConsumer, rule by rule, through WebsocketCommunicator.

The scope is built as the gate leaves it (tests/consumer_helpers.py); the channel layer is
the real channels-redis one from tests.settings.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import pytest
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.test import override_settings
from pydantic import StringConstraints

from secure_ws.codes import APP_SUBPROTOCOL, CloseCode, ErrorCode, Reason, private_close_code
from secure_ws.connection import ConnectionInfo
from secure_ws.consumer.loop import event_handler
from secure_ws.consumer.messages import ClientMessage, EmptyPayload, Schema, message_handler
from secure_ws.consumer.permissions import IsAdminUser
from secure_ws.consumer.secure import SecureJsonWebsocketConsumer
from secure_ws.sessions.pubsub import send_user_event
from secure_ws.sessions.registry import ConnectionRegistry, get_registry
from secure_ws.sessions.revocation import kick_channel, kick_session, kick_user
from secure_ws.state import close_redis
from tests.consumer_helpers import (
    communicator,
    error_then_close,
    receive_close,
    receive_frame,
    request,
    unsaved_user,
    watch,
)


class SayPayload(Schema):
    text: Annotated[str, StringConstraints(max_length=50)]


class SampleConsumer(SecureJsonWebsocketConsumer):
    """A small consumer with one type per rule under test."""

    @message_handler("say", schema=SayPayload)
    async def handle_say(self, message: ClientMessage[SayPayload]) -> None:
        """Echo the text back."""
        await self.send_message("said", {"text": message.payload.text}, id=message.id)

    @message_handler("boom")
    async def handle_boom(self, message: ClientMessage[EmptyPayload]) -> None:
        """Fail inside the handler."""
        raise RuntimeError("internal-secret-detail")

    @message_handler("admin.only", permissions=[IsAdminUser])
    async def handle_admin_only(self, message: ClientMessage[EmptyPayload]) -> None:
        """Only staff may send this."""
        await self.send_message("ack", None, id=message.id)

    @event_handler
    async def sample_event(self, event: dict[str, Any]) -> None:
        """A channel-layer event handler (Channels naming)."""
        await self.send_message("sampled", {"n": event.get("n")})


class TightConsumer(SampleConsumer):
    message_rate = 1.0
    message_burst = 3
    rate_limit_close_after = 4
    violation_limit = 100


class StrictViolations(SampleConsumer):
    violation_limit = 3


class IdleConsumer(SampleConsumer):
    idle_timeout = 0.3


class SmallFrames(SampleConsumer):
    max_message_bytes = 200


class RecordingSink:
    """An audit sink that remembers every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def connection_refused(self, info: ConnectionInfo, reason: Any) -> None:
        self.calls.append(("refused", reason))

    def connection_opened(self, info: ConnectionInfo) -> None:
        self.calls.append(("opened", info.connection_id))

    def security_event(self, info: ConnectionInfo, kind: str, detail: str) -> None:
        self.calls.append(("security_event", kind))

    def connection_closed(self, info: ConnectionInfo, close_code: int) -> None:
        counters = (info.messages_in, info.messages_out, info.bytes_in, info.bytes_out)
        self.calls.append(("closed", (close_code, counters, info.violations)))

    def kinds(self, name: str) -> list[Any]:
        return [value for call, value in self.calls if call == name]


@pytest.fixture
def audit(monkeypatch: pytest.MonkeyPatch) -> RecordingSink:
    sink = RecordingSink()
    monkeypatch.setattr("secure_ws.consumer.state.get_audit_sink", lambda: sink)
    monkeypatch.setattr("secure_ws.gate.refusal.get_audit_sink", lambda: sink)
    return sink


@pytest.fixture(autouse=True)
async def _close_shared_redis() -> AsyncIterator[None]:
    yield
    await close_redis()


async def open_(consumer: Any = SampleConsumer, user: Any = None, **kwargs: Any) -> Any:
    comm = communicator(consumer, user or unsaved_user(), **kwargs)
    connected, subprotocol = await comm.connect()
    assert connected
    assert subprotocol == APP_SUBPROTOCOL
    return comm


# ---------------------------------------------------------------------- handshake


async def test_the_app_subprotocol_is_selected_never_a_bearer_entry() -> None:
    comm = communicator(
        SampleConsumer, unsaved_user(), subprotocols=["bearer.eyJhbGciOi.x.y", APP_SUBPROTOCOL]
    )
    connected, subprotocol = await comm.connect()
    assert connected
    assert subprotocol == APP_SUBPROTOCOL
    await comm.disconnect()


async def test_a_client_that_does_not_offer_the_app_subprotocol_is_refused(
    audit: RecordingSink,
) -> None:
    comm = communicator(SampleConsumer, unsaved_user(), subprotocols=["chat"])
    connected, _ = await comm.connect()
    assert not connected
    assert audit.kinds("refused") == [Reason.SUBPROTOCOL_REQUIRED]
    assert audit.kinds("opened") == []


async def test_a_scope_the_gate_did_not_fill_is_refused(audit: RecordingSink) -> None:
    comm = communicator(SampleConsumer, unsaved_user(), with_gate=False)
    connected, _ = await comm.connect()
    assert not connected
    assert audit.kinds("refused") == [Reason.NOT_AUTHENTICATED]


async def test_an_anonymous_scope_is_refused_when_authentication_is_required() -> None:
    from django.contrib.auth.models import AnonymousUser

    comm = communicator(SampleConsumer, AnonymousUser())
    connected, _ = await comm.connect()
    assert not connected


async def test_a_scope_whose_user_differs_from_the_gate_record_is_refused() -> None:
    info_user = unsaved_user(pk=1, username="one")
    comm = communicator(SampleConsumer, unsaved_user(pk=2, username="two"))
    comm.scope["secure_ws"].user_id = info_user.pk
    connected, _ = await comm.connect()
    assert not connected


async def test_refusal_in_close_mode_sends_the_reason_before_the_close_code() -> None:
    with override_settings(SECURE_WS={"REFUSAL_MODE": "close", "REQUIRE_TLS": False}):
        comm = communicator(SampleConsumer, unsaved_user(), subprotocols=["chat"])
        await comm.send_input({"type": "websocket.connect"})
        accept = await comm.receive_output(3)
        assert accept["type"] == "websocket.accept"
        frame, close = await error_then_close(comm)
    assert frame["payload"]["code"] == Reason.SUBPROTOCOL_REQUIRED
    # Like a gate refusal: the 4xxx stand-in that daphne can send (1008 -> 4008).
    assert close["code"] == private_close_code(CloseCode.POLICY_VIOLATION) == 4008


# ---------------------------------------------------------------------- dispatch


async def test_ping_is_answered_with_pong_and_the_client_id() -> None:
    comm = await open_()
    assert await request(comm, {"type": "ping", "id": "p-1"}) == {
        "type": "pong",
        "id": "p-1",
        "payload": {},
    }
    await comm.disconnect()


async def test_a_declared_type_reaches_its_handler_with_a_validated_payload() -> None:
    comm = await open_()
    reply = await request(comm, {"type": "say", "id": "7", "payload": {"text": "hello"}})
    assert reply == {"type": "said", "id": "7", "payload": {"text": "hello"}}
    await comm.disconnect()


@pytest.mark.parametrize(
    "client_type",
    ["websocket.disconnect", "websocket.receive", "sample.event", "secure_ws.revoke", "close"],
)
async def test_client_types_never_reach_internal_or_channel_layer_handlers(
    client_type: str,
) -> None:
    comm = await open_()
    reply = await request(comm, {"type": client_type, "id": "x1", "payload": {}})
    assert reply["type"] == "error"
    assert reply["id"] == "x1"
    assert reply["payload"]["code"] == ErrorCode.UNKNOWN_TYPE
    assert (await request(comm, {"type": "ping"}))["type"] == "pong"
    await comm.disconnect()


async def test_schema_failures_answer_field_errors_that_do_not_echo_markup() -> None:
    comm = await open_()
    evil = "<script>alert(1)</script>"
    await comm.send_json_to(
        {"type": "say", "id": "s1", "payload": {"text": evil * 5, f"<img src=x>{evil}": 1}}
    )
    output = await comm.receive_output(3)
    reply = json.loads(output["text"])
    assert reply["type"] == "error"
    assert reply["id"] == "s1"
    assert reply["payload"]["code"] == ErrorCode.INVALID_MESSAGE
    locs = sorted(tuple(e["loc"]) for e in reply["payload"]["errors"])
    assert locs == [("payload", "<key>"), ("payload", "text")]
    assert "<script" not in output["text"]
    assert "<img" not in output["text"]
    await comm.disconnect()


async def test_a_permission_that_says_no_answers_forbidden_with_the_id() -> None:
    comm = await open_()
    reply = await request(comm, {"type": "admin.only", "id": "a1"})
    assert reply["payload"]["code"] == ErrorCode.FORBIDDEN
    assert reply["id"] == "a1"
    await comm.disconnect()
    staff = await open_(user=unsaved_user(is_staff=True))
    assert (await request(staff, {"type": "admin.only", "id": "a2"}))["type"] == "ack"
    await staff.disconnect()


# ---------------------------------------------------------------------- frames channels#2219


@pytest.mark.parametrize("text", ["", "not json", "{", "[1, 2", '{"type": "ping", "x": NaN}'])
async def test_frames_that_crash_channels_json_consumers_get_invalid_json(text: str) -> None:
    comm = await open_()
    await comm.send_input({"type": "websocket.receive", "text": text})
    reply = await receive_frame(comm)
    assert reply["type"] == "error"
    assert reply["payload"]["code"] == ErrorCode.INVALID_JSON
    assert (await request(comm, {"type": "ping"}))["type"] == "pong"
    await comm.disconnect()


async def test_a_binary_frame_gets_an_error_then_close_1003() -> None:
    comm = await open_()
    await comm.send_input({"type": "websocket.receive", "bytes": b"\x00\x01"})
    frame, close = await error_then_close(comm)
    assert frame["payload"]["code"] == Reason.BINARY_NOT_ALLOWED
    assert close["code"] == CloseCode.UNSUPPORTED_DATA
    await comm.disconnect()


async def test_nesting_past_max_json_depth_is_an_invalid_message() -> None:
    comm = await open_()
    frame = '{"type": "say", "payload": {"text": ' + "[" * 40 + "]" * 40 + "}}"
    await comm.send_input({"type": "websocket.receive", "text": frame})
    reply = await receive_frame(comm)
    assert reply["payload"]["code"] == ErrorCode.INVALID_MESSAGE
    await comm.disconnect()


async def test_a_frame_over_max_message_bytes_gets_too_large() -> None:
    comm = await open_(SmallFrames)
    reply = await request(comm, {"type": "say", "id": "big", "payload": {"text": "x" * 300}})
    assert reply["payload"]["code"] == ErrorCode.TOO_LARGE
    assert (await request(comm, {"type": "ping"}))["type"] == "pong"
    await comm.disconnect()


async def test_a_frame_far_over_max_message_bytes_closes_1009() -> None:
    comm = await open_(SmallFrames)
    await comm.send_to(text_data="x" * 5000)
    frame, close = await error_then_close(comm)
    assert frame["payload"]["code"] == Reason.TOO_LARGE
    assert close["code"] == CloseCode.MESSAGE_TOO_BIG
    await comm.disconnect()


async def test_max_message_bytes_setting_reaches_the_next_connection() -> None:
    with override_settings(SECURE_WS={"MAX_MESSAGE_BYTES": 100, "REQUIRE_TLS": False}):
        comm = await open_()
        reply = await request(comm, {"type": "say", "payload": {"text": "y" * 120}})
        assert reply["payload"]["code"] == ErrorCode.TOO_LARGE
        await comm.disconnect()
    comm = await open_()
    assert (await request(comm, {"type": "say", "payload": {"text": "y" * 40}}))["type"] == "said"
    await comm.disconnect()


# ---------------------------------------------------------------------- abuse


async def test_a_burst_past_the_bucket_is_rate_limited_then_closed_4429(
    audit: RecordingSink,
) -> None:
    comm = await open_(TightConsumer)
    for n in range(20):
        await comm.send_json_to({"type": "ping", "id": f"f{n}"})
    replies = []
    while True:
        output = await comm.receive_output(3)
        if output["type"] == "websocket.close":
            break
        replies.append(json.loads(output["text"]))
    assert output["code"] == CloseCode.RATE_LIMITED
    assert [r["type"] for r in replies[:3]] == ["pong"] * 3
    limited = [r for r in replies if r["payload"].get("code") == ErrorCode.RATE_LIMITED]
    assert limited
    assert limited[0]["id"] == "f3"
    assert replies[-1]["payload"]["code"] == Reason.RATE_LIMITED
    await comm.disconnect()
    assert audit.kinds("closed")[0][0] == CloseCode.RATE_LIMITED


async def test_repeated_violations_inside_the_window_close_1008(audit: RecordingSink) -> None:
    comm = await open_(StrictViolations)
    for n in range(2):
        reply = await request(comm, {"type": "nope", "id": str(n)})
        assert reply["payload"]["code"] == ErrorCode.UNKNOWN_TYPE
    await comm.send_json_to({"type": "nope"})
    assert (await receive_frame(comm))["payload"]["code"] == ErrorCode.UNKNOWN_TYPE
    frame, close = await error_then_close(comm)
    assert frame["payload"]["code"] == Reason.TOO_MANY_VIOLATIONS
    assert close["code"] == CloseCode.POLICY_VIOLATION
    await comm.disconnect()
    closed = audit.kinds("closed")
    assert closed[0][0] == CloseCode.POLICY_VIOLATION
    assert closed[0][2] == 3
    assert audit.kinds("security_event").count(ErrorCode.UNKNOWN_TYPE.value) == 3


# ---------------------------------------------------------------------- robustness


async def test_a_handler_exception_is_logged_answered_generically_and_survived(
    caplog: pytest.LogCaptureFixture, audit: RecordingSink
) -> None:
    comm = await open_()
    with caplog.at_level(logging.ERROR, logger="secure_ws.consumer"):
        reply = await request(comm, {"type": "boom", "id": "b1"})
    assert reply == {
        "type": "error",
        "id": "b1",
        "payload": {"code": ErrorCode.SERVER_ERROR, "detail": "Internal error"},
    }
    assert "internal-secret-detail" not in json.dumps(reply)
    connection_id = comm.scope["secure_ws"].connection_id
    assert any(connection_id in r.getMessage() for r in caplog.records)
    assert (await request(comm, {"type": "ping"}))["type"] == "pong"
    assert ErrorCode.SERVER_ERROR.value in audit.kinds("security_event")
    await comm.disconnect()


class ChannelledConsumer(SampleConsumer):
    """Joins a group, so it has a channel-layer channel of its own."""

    groups = ["sample-events"]

    async def not_an_event(self, event: dict[str, Any]) -> None:
        """A public method that is not marked ``@event_handler``."""
        await self.send_message("reached", None)


async def test_channel_layer_events_reach_only_methods_marked_event_handler() -> None:
    comm = await open_(ChannelledConsumer)
    channel = comm.scope["secure_ws"].channel_name
    assert channel
    layer = get_channel_layer()
    for event_type in (
        "handle.ping",
        "websocket.disconnect",
        "close",
        "send_message",
        "on_open",
        "not.an.event",
        "not_an_event",
    ):
        await layer.send(channel, {"type": event_type})
    await layer.send(channel, {"type": "sample.event", "n": 3})
    assert await receive_frame(comm) == {"type": "sampled", "payload": {"n": 3}}
    assert (await request(comm, {"type": "ping"}))["type"] == "pong"
    await comm.disconnect()


def test_client_and_transport_handlers_cannot_be_marked_event_handlers() -> None:
    async def handle_ping(event: dict[str, Any]) -> None:
        pass

    async def websocket_receive(event: dict[str, Any]) -> None:
        pass

    for method in (handle_ping, websocket_receive):
        with pytest.raises(TypeError):
            event_handler(method)


async def test_a_consumer_that_joins_no_group_makes_no_channel_layer_channel(
    redis_client: Any,
) -> None:
    comm = await open_()
    assert (await request(comm, {"type": "ping"}))["type"] == "pong"
    assert comm.scope["secure_ws"].channel_name == ""
    await comm.disconnect()


async def test_kick_channel_closes_a_connection_that_has_a_channel() -> None:
    comm = await open_(ChannelledConsumer)
    await kick_channel(comm.scope["secure_ws"].channel_name)
    frame, close = await error_then_close(comm)
    assert frame["payload"]["code"] == Reason.REVOKED.value
    assert close["code"] == CloseCode.FORBIDDEN
    await comm.disconnect()


async def test_per_user_events_go_through_the_same_event_allow_list() -> None:
    comm = await open_()
    user_id = comm.scope["user"].pk
    for event_type in (
        "handle.ping",
        "websocket.disconnect",
        "close",
        "end_connection",
        "deliver_event",
    ):
        await send_user_event(user_id, {"type": event_type})
    await send_user_event(user_id, {"type": "sample.event", "n": 3})
    assert await receive_frame(comm) == {"type": "sampled", "payload": {"n": 3}}
    assert (await request(comm, {"type": "ping"}))["type"] == "pong"
    await comm.disconnect()


async def test_unhandled_secure_ws_events_are_ignored_quietly_and_others_warn(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # secure_ws' own per-user events (a folder re-check) reach consumers that have no use
    # for them: that is expected. A foreign event with no handler is a wiring mistake.
    comm = await open_()
    user_id = comm.scope["user"].pk
    with caplog.at_level(logging.DEBUG, logger="secure_ws.consumer"):
        await send_user_event(user_id, {"type": "secure_ws.folder_access", "folder": "team"})
        await send_user_event(user_id, {"type": "nobody.handles_this"})
        for _ in range(500):  # events and client frames are two sources: let them land
            if "nobody.handles_this" in caplog.text:
                break
            await asyncio.sleep(0.02)
        assert (await request(comm, {"type": "ping"}))["type"] == "pong"
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "nobody.handles_this" in warnings[0]
    assert any("secure_ws.folder_access" in r.getMessage() for r in caplog.records)
    await comm.disconnect()


async def test_the_audit_sees_open_security_events_and_close_with_counters(
    audit: RecordingSink,
) -> None:
    comm = await open_()
    await request(comm, {"type": "ping"})
    await request(comm, {"type": "nope"})
    await comm.disconnect()
    assert len(audit.kinds("opened")) == 1
    assert audit.kinds("security_event") == [ErrorCode.UNKNOWN_TYPE.value]
    (code, (messages_in, messages_out, bytes_in, bytes_out), violations) = audit.kinds("closed")[0]
    assert code == 1000
    assert (messages_in, messages_out, violations) == (2, 2, 1)
    assert bytes_in > 0
    assert bytes_out > 0


class SlowToUnwindLayer(InMemoryChannelLayer):  # type: ignore[misc]
    """A channel layer whose receive, once cancelled, takes seconds to unwind.

    channels-redis does this when a receive is cancelled in the middle of a Redis command.
    """

    async def receive(self, channel: str) -> Any:
        try:
            return await super().receive(channel)
        except asyncio.CancelledError:
            await asyncio.shield(asyncio.sleep(3))
            raise


class SlowLayerConsumer(SampleConsumer):
    channel_layer_alias = "slow_to_unwind"
    groups = ["slow"]  # a channel, so there is a channel-layer receive to cancel


async def test_a_slow_to_unwind_channel_layer_delays_neither_the_end_nor_its_audit(
    audit: RecordingSink, settings: Any
) -> None:
    settings.CHANNEL_LAYERS = {
        **settings.CHANNEL_LAYERS,
        "slow_to_unwind": {"BACKEND": "tests.test_consumers.SlowToUnwindLayer"},
    }
    comm = await open_(SlowLayerConsumer)
    await comm.disconnect()  # cancels the consumer if it has not ended by itself within 1 s
    assert not comm.future.cancelled(), "the consumer waited for its channel layer to unwind"
    assert len(audit.kinds("closed")) == 1


async def test_disconnect_leaves_every_group(redis_client: Any) -> None:
    class Grouped(SampleConsumer):
        groups = ["room-1"]

    comm = await open_(Grouped)
    layer = get_channel_layer()
    room_key = layer._group_key("room-1")
    assert redis_client.zcard(room_key) == 1
    await comm.disconnect()
    assert redis_client.zcard(room_key) == 0


async def test_revocation_needs_no_channel_layer_group_only_the_process_registry(
    redis_client: Any,
) -> None:
    comm = await open_(session_id="sess-1")
    info = comm.scope["secure_ws"]
    layer = get_channel_layer()
    # No per-connection revocation groups (the user's or the login session's) in Redis.
    assert not redis_client.keys(layer._group_key(f"secure_ws.user.{info.user_id}"))
    assert not redis_client.keys(layer._group_key("secure_ws.session.sess-1"))
    registry = get_registry()
    assert [c.connection for c in registry.matches("user", str(info.user_id))] == [info]
    assert [c.connection for c in registry.matches("session", "sess-1")] == [info]
    assert [c.connection for c in registry.matches("connection", info.connection_id)] == [info]
    await comm.disconnect()
    assert len(registry) == 0
    assert registry.matches("session", "sess-1") == []


# ---------------------------------------------------------------------- lifecycle


async def test_token_expiry_warns_then_closes_4401() -> None:
    comm = await open_(token_exp=time.time() + 1.0)
    warning = await receive_frame(comm)
    assert warning["type"] == "auth.expiring"
    assert 0 < warning["payload"]["expires_in"] <= 1.0
    frame, close = await error_then_close(comm, wait=5)
    assert frame["payload"]["code"] == Reason.TOKEN_EXPIRED
    assert close["code"] == CloseCode.UNAUTHORIZED
    await comm.disconnect()


async def test_an_already_expired_token_closes_at_once() -> None:
    comm = await open_(token_exp=time.time() - 5)
    frame, close = await error_then_close(comm)
    assert frame["payload"]["code"] == Reason.TOKEN_EXPIRED
    assert close["code"] == CloseCode.UNAUTHORIZED
    await comm.disconnect()


async def test_an_idle_connection_closes_4408() -> None:
    comm = await open_(IdleConsumer)
    frame, close = await error_then_close(comm, wait=5)
    assert frame["payload"]["code"] == Reason.IDLE_TIMEOUT
    assert close["code"] == CloseCode.IDLE_TIMEOUT
    await comm.disconnect()


async def test_revoking_the_user_closes_the_connection_4403(audit: RecordingSink) -> None:
    comm = await open_()
    await kick_user(comm.scope["user"].pk)
    frame, close = await error_then_close(comm)
    assert frame["payload"]["code"] == Reason.REVOKED
    assert close["code"] == CloseCode.FORBIDDEN
    await comm.disconnect()
    assert audit.kinds("closed")[0][0] == CloseCode.FORBIDDEN


async def test_revoking_the_login_session_closes_its_connections() -> None:
    comm = await open_(session_id="sid-abc")
    spared = await open_(session_id="sid-other")
    await kick_session("sid-abc")
    frame, _ = await error_then_close(comm)
    assert frame["payload"]["code"] == Reason.REVOKED
    await comm.disconnect()
    assert (await request(spared, {"type": "ping"}))["type"] == "pong"
    await spared.disconnect()


async def test_kicking_one_connection_id_closes_only_that_connection() -> None:
    from secure_ws.sessions.revocation import kick_connection

    doomed, spared = await open_(), await open_()
    await kick_connection(doomed.scope["secure_ws"].connection_id)
    frame, close = await error_then_close(doomed)
    assert frame["payload"]["code"] == Reason.REVOKED
    assert close["code"] == CloseCode.FORBIDDEN
    await doomed.disconnect()
    assert (await request(spared, {"type": "ping"}))["type"] == "pong"
    await spared.disconnect()


async def test_a_revocation_before_the_accept_closes_right_after_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = ConnectionRegistry.add

    def add_and_revoke(self: ConnectionRegistry, conn: Any) -> None:
        original(self, conn)
        # The registry's close, run to completion now: the connection is not accepted yet.
        with pytest.raises(StopIteration):
            conn.end_connection(CloseCode.FORBIDDEN, Reason.REVOKED).send(None)

    monkeypatch.setattr(ConnectionRegistry, "add", add_and_revoke)
    comm = communicator(SampleConsumer, unsaved_user())
    connected, _ = await comm.connect()
    assert connected
    frame, close = await error_then_close(comm)
    assert frame["payload"]["code"] == Reason.REVOKED
    assert close["code"] == CloseCode.FORBIDDEN
    await comm.disconnect()


async def test_frames_after_the_server_closed_are_ignored() -> None:
    comm = await open_()
    await kick_user(comm.scope["user"].pk)
    await error_then_close(comm)
    await comm.send_json_to({"type": "ping"})
    assert await comm.receive_nothing(0.2)
    await comm.disconnect()


# ---------------------------------------------------------------------- auth.refresh


@pytest.fixture
def alice(demo_users: dict[str, Any]) -> Any:
    return demo_users["alice"]


async def test_auth_refresh_with_the_same_users_token_moves_the_expiry(
    alice: Any, token_for: Any
) -> None:
    comm = await open_(user=alice, token_exp=time.time() + 1.5)
    assert (await receive_frame(comm))["type"] == "auth.expiring"
    reply = await request(
        comm, {"type": "auth.refresh", "id": "r1", "payload": {"token": token_for(alice)}}
    )
    assert reply["type"] == "ack"
    assert reply["id"] == "r1"
    assert reply["payload"]["expires_in"] > 60
    # Not a wait for an event: the old expiry (1.5 s) passing without a close is the
    # behaviour under test (the timers themselves are tested with a fake clock).
    await asyncio.sleep(2.0)
    assert (await request(comm, {"type": "ping"}))["type"] == "pong"
    assert comm.scope["secure_ws"].token_exp > time.time() + 60
    await comm.disconnect()


async def test_auth_refresh_with_another_users_token_is_forbidden_and_closes_4403(
    demo_users: dict[str, Any], token_for: Any
) -> None:
    comm = await open_(user=demo_users["alice"])
    token = token_for(demo_users["mallory"])
    await comm.send_json_to({"type": "auth.refresh", "id": "r2", "payload": {"token": token}})
    frame, close = await error_then_close(comm)
    assert frame["payload"]["code"] == ErrorCode.FORBIDDEN
    assert frame["id"] == "r2"
    assert close["code"] == CloseCode.FORBIDDEN
    await comm.disconnect()


async def test_auth_refresh_into_another_login_session_moves_its_revocation(
    alice: Any, token_for: Any
) -> None:
    comm = await open_(user=alice, session_id="sid-old")
    token = token_for(alice, sid="sid-new")
    reply = await request(comm, {"type": "auth.refresh", "id": "r", "payload": {"token": token}})
    assert reply["type"] == "ack"
    witness = await watch(session_id="sid-old")
    await kick_session("sid-old")
    assert await witness.ended() is not None  # the kick has been applied on this process
    get_registry().remove(witness)
    assert (await request(comm, {"type": "ping"}))["type"] == "pong"
    await kick_session("sid-new")
    frame, close = await error_then_close(comm)
    assert frame["payload"]["code"] == Reason.REVOKED
    assert close["code"] == CloseCode.FORBIDDEN
    await comm.disconnect()


@pytest.mark.parametrize("token", ["garbage", "a.b.c", "x" * 5000])
async def test_auth_refresh_with_an_invalid_token_is_an_invalid_message(
    alice: Any, token: str
) -> None:
    comm = await open_(user=alice)
    reply = await request(comm, {"type": "auth.refresh", "id": "r3", "payload": {"token": token}})
    assert reply["payload"]["code"] == ErrorCode.INVALID_MESSAGE
    assert token[:20] not in json.dumps(reply["payload"])
    assert (await request(comm, {"type": "ping"}))["type"] == "pong"
    await comm.disconnect()


async def test_auth_refresh_with_an_expired_token_is_an_invalid_message(alice: Any) -> None:
    from datetime import timedelta

    from rest_framework_simplejwt.tokens import AccessToken

    expired = AccessToken.for_user(alice)
    expired.set_exp(lifetime=timedelta(seconds=-1))
    comm = await open_(user=alice)
    reply = await request(comm, {"type": "auth.refresh", "payload": {"token": str(expired)}})
    assert reply["payload"]["code"] == ErrorCode.INVALID_MESSAGE
    await comm.disconnect()


# ---------------------------------------------------------------------- declaration


def test_only_decorated_handle_methods_are_client_types() -> None:
    assert set(SampleConsumer.message_registry.specs) == {
        "ping",
        "auth.refresh",
        "say",
        "boom",
        "admin.only",
    }


async def test_a_subclass_can_override_a_handler_without_redeclaring_it() -> None:
    class Quiet(SampleConsumer):
        async def handle_ping(self, message: ClientMessage[EmptyPayload]) -> None:
            await self.send_message("quiet", None, id=message.id)

    comm = await open_(Quiet)
    assert (await request(comm, {"type": "ping"}))["type"] == "quiet"
    await comm.disconnect()


async def test_close_is_preceded_by_an_error_frame_every_time() -> None:
    comm = await open_(StrictViolations)
    for _ in range(3):
        await comm.send_json_to({"type": "nope"})
    outputs = []
    while True:
        output = await comm.receive_output(3)
        outputs.append(output)
        if output["type"] == "websocket.close":
            break
    assert outputs[-2]["type"] == "websocket.send"
    assert json.loads(outputs[-2]["text"])["payload"]["code"] == outputs[-1]["reason"]
    await comm.disconnect()


async def test_receive_close_helper_rejects_frames() -> None:
    comm = await open_()
    await comm.send_json_to({"type": "ping"})
    with pytest.raises(AssertionError):
        await receive_close(comm)
    await comm.disconnect()


async def test_a_close_code_the_server_refuses_falls_back_to_its_4xxx_stand_in(
    audit: RecordingSink,
) -> None:
    def autobahn_like(app: Any) -> Any:
        async def wrapped(scope: Any, receive: Any, send: Any) -> None:
            async def strict_send(message: dict[str, Any]) -> None:
                code = message.get("code", 1000)
                if message["type"] == "websocket.close" and 1000 < code < 3000:
                    raise ValueError(f"invalid close code {code}")
                await send(message)

            await app(scope, receive, strict_send)

        return wrapped

    comm = communicator(autobahn_like(SampleConsumer.as_asgi()), unsaved_user())
    assert (await comm.connect())[0]
    await comm.send_input({"type": "websocket.receive", "bytes": b"\x01"})
    frame, close = await error_then_close(comm)
    assert frame["payload"]["code"] == Reason.BINARY_NOT_ALLOWED
    assert close["code"] == 4003
    await comm.disconnect()
    assert audit.kinds("closed")[0][0] == 4003


async def test_a_failing_channel_layer_closes_the_connection_1013(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    layer = get_channel_layer()

    async def broken_receive(channel: str) -> dict[str, Any]:
        await asyncio.sleep(0.05)
        raise ConnectionError("redis went away")

    monkeypatch.setattr(layer, "receive", broken_receive)
    comm = await open_(ChannelledConsumer)  # a connection with a channel-layer receive
    frame, close = await error_then_close(comm)
    assert frame["payload"]["code"] == Reason.BACKEND_UNAVAILABLE
    assert close["code"] == CloseCode.TRY_AGAIN_LATER
    await comm.disconnect()


async def test_a_failing_audit_sink_or_signal_receiver_never_stops_the_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from secure_ws import signals

    class BrokenSink:
        def __getattr__(self, name: str) -> Any:
            def fail(*args: Any) -> None:
                raise RuntimeError("audit database is down")

            return fail

    def broken_receiver(**kwargs: Any) -> None:
        raise RuntimeError("receiver bug")

    monkeypatch.setattr("secure_ws.consumer.state.get_audit_sink", BrokenSink)
    signals.connection_accepted.connect(broken_receiver)
    signals.security_event.connect(broken_receiver)
    try:
        comm = await open_()
        assert (await request(comm, {"type": "ping"}))["type"] == "pong"
        assert (await request(comm, {"type": "nope"}))["payload"]["code"] == ErrorCode.UNKNOWN_TYPE
        assert (await request(comm, {"type": "ping"}))["type"] == "pong"
        await comm.disconnect()
    finally:
        signals.connection_accepted.disconnect(broken_receiver)
        signals.security_event.disconnect(broken_receiver)


# ---------------------------------------------------------------------- traffic verdicts


def traffic_with(**overrides: Any) -> Any:
    from secure_ws.consumer.limits import ConnectionLimits
    from secure_ws.consumer.traffic import ConnectionTraffic

    limits: dict[str, Any] = {
        "max_message_bytes": 100,
        "max_json_depth": 8,
        "allow_binary": False,
        "message_rate": 0.001,
        "message_burst": 2,
        "byte_rate": 10_000,
        "rate_limit_close_after": 3,
        "violation_limit": 2,
        "violation_window": 60.0,
        "idle_timeout": None,
        "token_expiry_warning": 0.0,
        "max_pending_output": 1024,
        "pending_output_timeout": 1.0,
    }
    return ConnectionTraffic(ConnectionInfo(), ConnectionLimits(**{**limits, **overrides}))


def test_traffic_answers_a_slightly_large_frame_and_closes_on_a_far_larger_one() -> None:
    traffic = traffic_with()
    just_over = traffic.received(101)
    assert just_over.rejection is not None
    assert just_over.rejection.code == ErrorCode.TOO_LARGE
    assert traffic.received(401).close == (CloseCode.MESSAGE_TOO_BIG, Reason.TOO_LARGE)
    assert (traffic.info.messages_in, traffic.info.bytes_in) == (2, 502)


def test_traffic_counts_one_violation_per_rate_limited_streak_then_closes_4429() -> None:
    traffic = traffic_with()
    assert traffic.received(10).admitted
    assert traffic.received(10).admitted
    first, second = traffic.received(10), traffic.received(10)
    assert first.rejection is not None
    assert first.rejection.code == ErrorCode.RATE_LIMITED
    assert (first.violation, second.violation) == (True, False)
    assert traffic.received(10).close == (CloseCode.RATE_LIMITED, Reason.RATE_LIMITED)
    assert not traffic.violation()
    assert traffic.violation()
    assert traffic.info.violations == 2


# ---------------------------------------------------------------------- per-connection memory


def test_per_connection_objects_have_no_instance_dict() -> None:
    from secure_ws.consumer.timers import ConnectionTimers
    from secure_ws.gate.caps import ConnectionSlot
    from secure_ws.gate.handshake import HandshakeHeaders

    async def noop(*args: Any) -> None:
        pass

    traffic = traffic_with()
    held = [
        traffic.info,
        traffic.limits,
        traffic,
        traffic.rate_limiter,
        traffic.violation_window,
        ConnectionTimers(close=noop, warn=noop, failed=lambda where: None),
        ConnectionSlot("slot", ["k"], 60),
        HandshakeHeaders([(b"host", b"example.com")]),
    ]
    assert [type(obj).__name__ for obj in held if hasattr(obj, "__dict__")] == []
    # The violation window's deque is made at the first violation, not per connection.
    assert traffic.violation_window.events is None
    assert not traffic.violation()
    assert traffic.violation_window.events is not None


def test_connections_of_one_class_share_their_frozen_limits() -> None:
    assert SampleConsumer().get_limits() is SampleConsumer().get_limits()
    assert IdleConsumer().get_limits().idle_timeout == 0.3
    assert SampleConsumer().get_limits() is not IdleConsumer().get_limits()


def test_connection_info_still_escapes_client_text_with_slots() -> None:
    info = ConnectionInfo(user_agent="agent\r\nFORGED: yes")
    info.path = "/ws/\nx"
    assert "\n" not in info.user_agent + info.path
    with pytest.raises(AttributeError):
        info.not_a_field = 1  # type: ignore[attr-defined]


def test_connection_counters_are_plain_slots_and_only_client_text_is_escaped() -> None:
    import types

    info = ConnectionInfo(user_agent="evil\nagent")
    info.username = "forged\r\nline"
    assert "\n" not in info.user_agent
    assert "\r" not in info.username
    # Per-message counters go straight to their slot: no Python code per increment.
    for name in ("messages_in", "messages_out", "bytes_in", "bytes_out", "violations"):
        assert isinstance(vars(ConnectionInfo)[name], types.MemberDescriptorType), name
