"""Signals: every receiver kind is called, and none of them decides a connection."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from django.dispatch import Signal

from secure_ws import signals
from secure_ws.codes import ErrorCode, Reason
from secure_ws.connection import ConnectionInfo
from secure_ws.consumer.secure import SecureJsonWebsocketConsumer
from secure_ws.exceptions import Refused
from secure_ws.gate import refusal
from secure_ws.state import close_redis
from tests.consumer_helpers import communicator, request, unsaved_user

#: Each signal with the keyword arguments it is sent with (besides ``info``).
SIGNALS: dict[str, tuple[Signal, dict[str, Any]]] = {
    "connection_refused": (signals.connection_refused, {"reason": Reason.ORIGIN_REFUSED}),
    "connection_accepted": (signals.connection_accepted, {}),
    "connection_closed": (signals.connection_closed, {"close_code": 1000}),
    "security_event": (signals.security_event, {"kind": "invalid_json", "detail": "x"}),
}


class Calls:
    """Receivers of every kind that record what they were called with, and where."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []
        self.threads: list[int] = []

    def sync_raising(self, **kwargs: Any) -> None:
        self.seen.append(("sync_raising", kwargs))
        self.threads.append(threading.get_ident())
        raise RuntimeError("sync receiver bug")

    async def async_ok(self, **kwargs: Any) -> None:
        await asyncio.sleep(0)
        self.seen.append(("async_ok", kwargs))

    async def async_raising(self, **kwargs: Any) -> None:
        self.seen.append(("async_raising", kwargs))
        raise RuntimeError("async receiver bug")

    def kinds(self) -> list[str]:
        return sorted(kind for kind, _ in self.seen)


RECEIVER_KINDS = ["sync_raising", "async_ok", "async_raising"]


@pytest.fixture
def connect_all() -> Iterator[Callable[[Signal], Calls]]:
    """Connect one receiver of each kind to the signals asked for; disconnect after."""
    connected: list[tuple[Signal, Any]] = []

    def connect(signal: Signal) -> Calls:
        calls = Calls()
        for kind in RECEIVER_KINDS:
            receiver = getattr(calls, kind)
            signal.connect(receiver, weak=False)
            connected.append((signal, receiver))
        return calls

    yield connect
    for signal, receiver in connected:
        signal.disconnect(receiver)


@pytest.fixture(autouse=True)
async def _close_shared_redis() -> AsyncIterator[None]:
    yield
    await close_redis()


async def called(calls: Calls, count: int = len(RECEIVER_KINDS)) -> None:
    """Wait (under a deadline) until ``count`` receiver calls were recorded."""
    async with asyncio.timeout(5):
        # Sync receivers record from a worker thread: poll rather than an asyncio.Event.
        while len(calls.seen) < count:  # noqa: ASYNC110
            await asyncio.sleep(0.01)


def failure_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "bug" in str(r.exc_info and r.exc_info[1])]


@pytest.mark.parametrize("name", list(SIGNALS))
async def test_send_calls_every_receiver_kind_and_logs_each_failure_once(
    name: str, connect_all: Callable[[Signal], Calls], caplog: pytest.LogCaptureFixture
) -> None:
    signal, extra = SIGNALS[name]
    calls = connect_all(signal)
    info = ConnectionInfo(client_ip="192.0.2.1")
    with caplog.at_level(logging.DEBUG):
        await signals.send(signal, info=info, **extra)
    assert calls.kinds() == sorted(RECEIVER_KINDS)
    assert all(kwargs["info"] is info for _, kwargs in calls.seen)
    # A sync receiver runs in a worker thread (it may use the ORM), not on the loop.
    assert calls.threads != [threading.get_ident()]
    lines = failure_lines(caplog)
    assert len(lines) == 2
    assert all(r.name == "secure_ws.signals" for r in lines)
    assert all(info.connection_id in r.getMessage() for r in lines)
    assert all(name in r.getMessage() for r in lines)


async def test_send_soon_from_sync_code_on_the_loop_sends_in_a_task(
    connect_all: Callable[[Signal], Calls],
) -> None:
    calls = connect_all(signals.security_event)
    signals.send_soon(signals.security_event, info=ConnectionInfo(), kind="k", detail="d")
    await called(calls)
    assert calls.kinds() == sorted(RECEIVER_KINDS)


def test_send_soon_outside_a_loop_sends_at_once(
    connect_all: Callable[[Signal], Calls], caplog: pytest.LogCaptureFixture
) -> None:
    calls = connect_all(signals.security_event)
    info = ConnectionInfo()
    signals.send_soon(signals.security_event, info=info, kind="k", detail="d")
    assert calls.kinds() == sorted(RECEIVER_KINDS)
    assert len(failure_lines(caplog)) == 2


async def test_a_refusal_is_answered_whatever_its_receivers_do(
    connect_all: Callable[[Signal], Calls],
) -> None:
    calls = connect_all(signals.connection_refused)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "websocket", "path": "/ws/info/", "subprotocols": []}
    await refusal.refuse(scope, receive, send, Refused(Reason.ORIGIN_REFUSED, "test"))
    assert sent == [{"type": "websocket.close"}]
    assert calls.kinds() == sorted(RECEIVER_KINDS)
    assert calls.seen[0][1]["reason"] == Reason.ORIGIN_REFUSED


async def test_receivers_of_every_kind_never_change_an_open_connection(
    connect_all: Callable[[Signal], Calls],
) -> None:
    accepted = connect_all(signals.connection_accepted)
    events = connect_all(signals.security_event)
    closed = connect_all(signals.connection_closed)
    comm = communicator(SecureJsonWebsocketConsumer, unsaved_user())
    connected, _ = await comm.connect()
    assert connected
    await called(accepted)
    assert accepted.kinds() == sorted(RECEIVER_KINDS)
    assert (await request(comm, {"type": "nope"}))["payload"]["code"] == ErrorCode.UNKNOWN_TYPE
    assert (await request(comm, {"type": "ping"}))["type"] == "pong"
    await called(events)
    assert {kwargs["kind"] for _, kwargs in events.seen} == {ErrorCode.UNKNOWN_TYPE.value}
    await comm.disconnect()
    await called(closed)
    assert closed.kinds() == sorted(RECEIVER_KINDS)
    assert {kwargs["close_code"] for _, kwargs in closed.seen} == {1000}
