"""Unread output, fan-out to stalled subscribers and expensive replies are bounded.

The consumer reads the server's buffer through :mod:`secure_ws.compat`; here a stand-in
buffer says how much is unread, so each rule is checked on its own. The end-to-end proof
on real daphne and uvicorn processes is ``tests/reliability/test_slow_consumers.py``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.test import override_settings

from project.filebox.models import Folder, StoredFile
from secure_ws.audit.models import ConnectionRecord
from secure_ws.audit.writer import AuditWriter
from secure_ws.codes import CloseCode, ErrorCode, Reason
from secure_ws.compat import OutputBuffer
from secure_ws.connection import ConnectionInfo
from secure_ws.consumer.backpressure import OutputBound
from secure_ws.consumer.traffic import ConnectionTraffic
from secure_ws.contrib.files.consumer import FileEventConsumer
from secure_ws.contrib.files.events import FILE_EVENT_LAYER_TYPE
from secure_ws.state import close_redis
from tests.consumer_helpers import communicator, error_then_close, receive_frame, request
from tests.test_consumers import RecordingSink

SHA = "b" * 64
LIMIT = 10_000


class StandInBuffer(OutputBuffer):
    """An output buffer whose unread size the test sets."""

    def __init__(self, *, blocking: bool = False) -> None:
        self.unread = 0
        self.blocking = blocking
        self.aborted = 0

    def pending(self) -> int:
        return self.unread

    def socket(self) -> Any | None:
        return None

    def abort(self) -> None:
        self.aborted += 1

    def abort_later(self, delay: float) -> None:
        self.abort()


class BufferedFileConsumer(FileEventConsumer):
    """The file consumer over :class:`StandInBuffer` with a small ``max_pending_output``."""

    max_pending_output = LIMIT
    buffer: StandInBuffer = StandInBuffer()

    def attach_output(self) -> None:
        state = self.state
        assert state.traffic is not None
        state.output = OutputBound(type(self).buffer, state.info, state.traffic.limits)


@pytest.fixture
def buffer() -> StandInBuffer:
    BufferedFileConsumer.buffer = StandInBuffer()
    return BufferedFileConsumer.buffer


@pytest.fixture
def audit(monkeypatch: pytest.MonkeyPatch) -> RecordingSink:
    sink = RecordingSink()
    monkeypatch.setattr("secure_ws.consumer.state.get_audit_sink", lambda: sink)
    return sink


@pytest.fixture(autouse=True)
async def _close_shared_redis() -> AsyncIterator[None]:
    yield
    await close_redis()


async def connect(user: Any, consumer: type[FileEventConsumer] = BufferedFileConsumer) -> Any:
    comm = communicator(consumer, user, path="/ws/files/")
    connected, _ = await comm.connect()
    assert connected
    return comm


async def test_a_reply_past_max_pending_output_closes_4429_slow_consumer_and_aborts(
    demo_users: dict[str, Any], buffer: StandInBuffer, audit: RecordingSink
) -> None:
    comm = await connect(demo_users["carol"])
    buffer.unread = LIMIT  # at the bound: still served
    assert (await request(comm, {"type": "ping", "id": "a", "payload": {}}))["type"] == "pong"
    buffer.unread = LIMIT + 1
    await comm.send_json_to({"type": "ping", "id": "b", "payload": {}})
    frame, close = await error_then_close(comm)
    assert frame["payload"]["code"] == Reason.SLOW_CONSUMER.value
    assert close["code"] == CloseCode.RATE_LIMITED
    assert buffer.aborted == 1  # the socket is released even if the close never leaves
    assert Reason.SLOW_CONSUMER.value in audit.kinds("security_event")
    await comm.send_input({"type": "websocket.disconnect", "code": 1006})
    await comm.wait(3)
    assert audit.kinds("closed")[0][0] == CloseCode.RATE_LIMITED


async def test_a_send_that_waits_past_pending_output_timeout_closes_the_slow_consumer(
    audit: RecordingSink,
) -> None:
    """uvicorn's send waits while its buffer is full: a wait past the timeout is a close."""
    consumer = BufferedFileConsumer()
    consumer.scope = {"type": "websocket"}
    consumer.state.accepted = True
    stalled = asyncio.Event()
    sent: list[dict[str, Any]] = []

    async def blocking_send(message: dict[str, Any]) -> None:
        if message["type"] == "websocket.send" and not sent:
            sent.append(message)
            await stalled.wait()  # the client never reads
        sent.append(message)

    consumer.base_send = blocking_send
    buffer = StandInBuffer(blocking=True)
    buffer.unread = 1  # below the bound, but the server's send will wait
    limits = consumer.get_limits()
    state = consumer.state
    state.limits = dataclasses.replace(limits, pending_output_timeout=0.05)
    state.traffic = ConnectionTraffic(state.info, state.limits)
    state.output = OutputBound(buffer, state.info, state.limits)
    consumer.close = _record_close(sent)  # type: ignore[method-assign]
    await asyncio.wait_for(consumer.send_message("pong"), 5)
    assert consumer.connection.close_reason == Reason.SLOW_CONSUMER.value
    assert buffer.aborted == 1
    assert consumer.connection.messages_out == 0
    assert Reason.SLOW_CONSUMER.value in audit.kinds("security_event")


def _record_close(sent: list[dict[str, Any]]) -> Any:
    async def close(code: int | None = None, reason: str | None = None) -> None:
        sent.append({"type": "websocket.close", "code": code})

    return close


async def test_fan_out_to_a_stalled_subscriber_is_dropped_and_counted(
    demo_users: dict[str, Any], buffer: StandInBuffer, audit: RecordingSink
) -> None:
    comm = await connect(demo_users["carol"])
    reply = await request(comm, {"type": "subscribe", "id": "s", "payload": {"folder": "team"}})
    assert reply["type"] == "ack"
    event = {
        "type": FILE_EVENT_LAYER_TYPE,
        "event": "file.deleted",
        "payload": {
            "folder": "team",
            "seq": 1,
            "file_id": str(uuid.uuid4()),
            "sender": None,
            "timestamp": 0.0,
        },
    }
    consumer_channel = await _channel_of(comm)
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    buffer.unread = LIMIT // 2 + 1  # past event_drop_fraction of the bound
    for _ in range(3):
        await layer.send(consumer_channel, event)
    for _ in range(100):
        if _last_info.events_dropped == 3:
            break
        await asyncio.sleep(0.02)
    assert _last_info.events_dropped == 3
    assert await comm.receive_nothing(0.1)
    # Replies still go out below the bound, and events again once the client reads.
    assert (await request(comm, {"type": "ping", "id": "p", "payload": {}}))["type"] == "pong"
    buffer.unread = 0
    await layer.send(consumer_channel, event)
    assert (await receive_frame(comm))["type"] == "file.deleted"
    assert audit.kinds("security_event").count(Reason.SLOW_CONSUMER.value) == 1
    assert not audit.kinds("closed")
    await comm.disconnect()


_last_info = ConnectionInfo()


async def _channel_of(comm: Any) -> str:
    """The consumer's channel name, from the ConnectionInfo the gate put in the scope."""
    global _last_info
    _last_info = comm.scope["secure_ws"]
    for _ in range(50):
        if _last_info.channel_name:
            return _last_info.channel_name
        await asyncio.sleep(0.02)
    raise AssertionError("the consumer has no channel name")


async def test_folder_state_is_paged_and_says_where_the_next_page_starts(
    demo_users: dict[str, Any],
) -> None:
    folder = await sync_to_async(Folder.objects.get)(slug="team")
    page = FileEventConsumer.folder_state_page_size
    total = page * 2 + 7
    await sync_to_async(StoredFile.objects.bulk_create)(
        StoredFile(folder=folder, name=f"f{i}.txt", size=1, content_type="text/plain", sha256=SHA)
        for i in range(total)
    )
    comm = await connect(demo_users["carol"], FileEventConsumer)
    seen: list[str] = []
    offset: int | None = 0
    pages = 0
    while offset is not None:
        reply = await request(
            comm, {"type": "resync", "id": "r", "payload": {"folder": "team", "offset": offset}}
        )
        assert reply["type"] == "folder.state", reply
        assert len(reply["payload"]["files"]) <= page
        seen += [f["file_id"] for f in reply["payload"]["files"]]
        offset = reply["payload"].get("next_offset")
        pages += 1
    assert pages == 3
    assert len(seen) == len(set(seen)) == total
    past_the_end = await request(
        comm, {"type": "resync", "payload": {"folder": "team", "offset": total + 5}}
    )
    assert past_the_end["payload"]["files"] == []
    assert "next_offset" not in past_the_end["payload"]
    await comm.disconnect()


async def test_resync_has_its_own_lower_rate(demo_users: dict[str, Any]) -> None:
    class QuickResync(FileEventConsumer):
        resync_rate = 0.001
        resync_burst = 2

    comm = await connect(demo_users["carol"], QuickResync)
    frame = {"type": "resync", "payload": {"folder": "team"}}
    assert (await request(comm, frame))["type"] == "folder.state"
    assert (await request(comm, frame))["type"] == "folder.state"
    refused = await request(comm, frame)
    assert refused["type"] == "error"
    assert refused["payload"]["code"] == ErrorCode.RATE_LIMITED
    # Other requests keep their own, higher rate.
    assert (await request(comm, {"type": "ping", "payload": {}}))["type"] == "pong"
    await comm.disconnect()


@pytest.mark.django_db
def test_the_audit_row_of_a_close_carries_its_reason_and_dropped_events() -> None:
    from django.conf import settings

    with override_settings(SECURE_WS={**settings.SECURE_WS, "AUDIT_BATCH_SIZE": 100}):
        writer = AuditWriter(autostart=False)
        same_batch, later_batch = ConnectionInfo(), ConnectionInfo()
        writer.connection_opened(same_batch)
        writer.connection_opened(later_batch)
        same_batch.close_reason = Reason.SLOW_CONSUMER.value
        same_batch.events_dropped = 12
        writer.connection_closed(same_batch, 4429)
        assert writer.flush()
        later_batch.close_reason = Reason.REVOKED.value
        writer.connection_closed(later_batch, 4403)
        assert writer.flush()
    first = ConnectionRecord.objects.get(connection_id=same_batch.connection_id)
    assert (first.close_code, first.reason) == (4429, Reason.SLOW_CONSUMER.value)
    assert "12 events dropped" in first.note
    second = ConnectionRecord.objects.get(connection_id=later_batch.connection_id)
    assert (second.close_code, second.reason, second.note) == (4403, Reason.REVOKED.value, "")
