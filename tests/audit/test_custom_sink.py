"""A project's own audit sink, named by dotted path in ``AUDIT_SINKS``."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import pytest
from asgiref.sync import sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from django.urls import path

from secure_ws.audit.sink import AuditSink
from secure_ws.audit.sinks import AUDIT_SINK_METHODS, custom_sink
from secure_ws.audit.writer import AuditWriter, get_writer
from secure_ws.codes import APP_SUBPROTOCOL, ErrorCode, Reason
from secure_ws.conf import build_settings
from secure_ws.connection import ConnectionInfo
from secure_ws.gate.stack import secure_websocket
from secure_ws.state import close_redis
from tests.test_consumers import SampleConsumer

HERE = __name__
ORIGIN = "http://testserver"


class CollectingSink:
    """What a project writes: the four methods of AuditSink, here keeping what they get."""

    received: ClassVar[list[tuple[str, ConnectionInfo, tuple[Any, ...]]]] = []

    def connection_refused(self, info: ConnectionInfo, reason: Reason) -> None:
        self.received.append(("refused", info, (reason,)))

    def connection_opened(self, info: ConnectionInfo) -> None:
        self.received.append(("opened", info, ()))

    def security_event(self, info: ConnectionInfo, kind: str, detail: str) -> None:
        self.received.append(("security_event", info, (kind, detail)))

    def connection_closed(self, info: ConnectionInfo, close_code: int) -> None:
        self.received.append(("closed", info, (close_code,)))


class RaisingSink(CollectingSink):
    def connection_opened(self, info: ConnectionInfo) -> None:
        raise RuntimeError("sink bug")


class NotASink:
    def connection_opened(self, info: ConnectionInfo) -> None:
        return None


not_a_class = CollectingSink()


@pytest.fixture(autouse=True)
def _fresh_sinks() -> None:
    CollectingSink.received = []
    custom_sink.cache_clear()


@pytest.mark.unit
def test_the_required_methods_are_those_of_the_sink_protocol() -> None:
    declared = {
        name
        for name, member in vars(AuditSink).items()
        if inspect.isfunction(member) and not name.startswith("_")
    }
    assert set(AUDIT_SINK_METHODS) == declared


@pytest.mark.unit
def test_a_dotted_path_to_a_sink_class_is_accepted_next_to_the_names() -> None:
    built = build_settings({"AUDIT_SINKS": ["log", f"{HERE}.CollectingSink"]})
    assert built.AUDIT_SINKS == ("log", f"{HERE}.CollectingSink")


@pytest.mark.unit
@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            "tests.audit.no_such_module.Sink",
            r"'tests\.audit\.no_such_module\.Sink' cannot be imported",
        ),
        (f"{HERE}.NoSuchClass", "cannot be imported"),
        (
            f"{HERE}.NotASink",
            "is not an audit sink: it lacks connection_refused, security_event, connection_closed",
        ),
        (f"{HERE}.not_a_class", "is not a class"),
        ("kafka", r"names from \['log', 'metrics', 'database'\] or dotted paths"),
    ],
)
def test_a_bad_sink_is_refused_when_the_settings_load(entry: str, message: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=message):
        build_settings({"AUDIT_SINKS": [entry]})


def test_a_sink_that_raises_on_one_record_still_gets_the_next(
    caplog: pytest.LogCaptureFixture,
) -> None:
    writer = AuditWriter(autostart=False, sinks=[f"{HERE}.RaisingSink"])
    info = ConnectionInfo(client_ip="192.0.2.50")
    writer.connection_opened(info)
    writer.connection_closed(info, 1000)
    assert writer.flush() is True
    assert [(kind, args) for kind, _, args in CollectingSink.received] == [("closed", (1000,))]
    assert "audit sink RaisingSink failed on a open record" in caplog.text


@pytest.fixture
async def gate_app(settings: Any) -> AsyncIterator[Any]:
    """The whole gate in front of a secure consumer, auditing only to ``CollectingSink``."""
    settings.ALLOWED_HOSTS = ["testserver"]
    settings.SECURE_WS = {
        **settings.SECURE_WS,
        "ALLOWED_ORIGINS": [ORIGIN],
        "AUDIT_SINKS": [f"{HERE}.CollectingSink"],
    }
    yield secure_websocket(URLRouter([path("ws/test/", SampleConsumer.as_asgi())]))
    await close_redis()
    await sync_to_async(connections.close_all)()


def handshake(app: Any, subprotocols: list[str]) -> WebsocketCommunicator:
    comm = WebsocketCommunicator(
        app,
        "/ws/test/",
        headers=[(b"host", b"testserver"), (b"origin", ORIGIN.encode())],
        subprotocols=subprotocols,
    )
    comm.scope["client"] = ["198.51.100.60", 50000]
    return comm


async def test_a_custom_sink_receives_the_records_of_a_real_connection(
    gate_app: Any, demo_users: dict[str, Any], token_for: Any
) -> None:
    token = token_for(demo_users["alice"])
    comm = handshake(gate_app, [APP_SUBPROTOCOL, f"bearer.{token}"])
    assert (await comm.connect())[0]
    await comm.send_to(text_data="{not json")
    await comm.receive_json_from(5)
    await comm.disconnect()
    refused = handshake(gate_app, [APP_SUBPROTOCOL])
    assert not (await refused.connect())[0]
    await sync_to_async(get_writer().flush)()

    kinds = [kind for kind, _, _ in CollectingSink.received]
    assert kinds == ["opened", "security_event", "closed", "refused"]
    (_, opened, _), (_, _, event), (_, closed, (close_code,)), (_, _, (reason,)) = (
        CollectingSink.received
    )
    assert (opened.username, opened.client_ip, opened.origin) == ("alice", "198.51.100.60", ORIGIN)
    assert event[0] == ErrorCode.INVALID_JSON.value
    assert closed.connection_id == opened.connection_id
    assert (closed.messages_in, closed.violations, close_code) == (1, 1, 1000)
    assert reason is Reason.CREDENTIALS_MISSING
    for _, info, arguments in CollectingSink.received:
        assert token not in repr(info) + repr(arguments)
