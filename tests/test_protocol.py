"""The protocol as data: ``ws_schema`` and ``docs/protocol.md`` come from the registry."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from project.routing import websocket_urlpatterns
from secure_ws.codes import CloseCode, ErrorCode
from secure_ws.consumer.protocol import build_asyncapi, endpoints_from_urlpatterns, render_markdown
from secure_ws.contrib.files.consumer import FileEventConsumer

pytestmark = pytest.mark.unit

PROTOCOL_DOC = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"


def ws_schema(*args: str) -> str:
    out = io.StringIO()
    call_command("ws_schema", *args, stdout=out)
    return out.getvalue()


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return dict(json.loads(ws_schema()))


def resolve(document: dict[str, Any], ref: str) -> Any:
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def test_docs_protocol_md_matches_the_registered_consumers() -> None:
    expected = render_markdown(build_asyncapi(endpoints_from_urlpatterns(websocket_urlpatterns)))
    assert PROTOCOL_DOC.read_text() == expected, (
        "docs/protocol.md drifted from the message registry: regenerate it with "
        "`python manage.py ws_schema --markdown > docs/protocol.md`"
    )


def test_ws_schema_markdown_is_what_the_docs_hold() -> None:
    assert ws_schema("--markdown") == PROTOCOL_DOC.read_text()


def test_ws_schema_prints_an_asyncapi_3_document(document: dict[str, Any]) -> None:
    assert document["asyncapi"] == "3.0.0"
    channel = document["channels"]["ws-files"]
    assert channel["address"] == "/ws/files/"
    client_types = {
        document["components"]["messages"][key]["name"]
        for key in channel["messages"]
        if key.startswith("client.")
    }
    assert client_types == set(FileEventConsumer.message_registry.specs)
    for action in ("receive", "send"):
        operation = document["operations"][f"ws-files.{action}"]
        assert operation["action"] == action
        for message in operation["messages"]:
            assert resolve(document, message["$ref"])


def test_every_payload_schema_reference_resolves(document: dict[str, Any]) -> None:
    for message in document["components"]["messages"].values():
        envelope = message["payload"]
        assert envelope["additionalProperties"] is False
        assert envelope["properties"]["id"]["maxLength"] == 64
        payload = resolve(document, envelope["properties"]["payload"]["$ref"])
        assert payload["type"] == "object"


def test_payload_schemas_come_from_pydantic(document: dict[str, Any]) -> None:
    upload = document["components"]["schemas"]["FileUploadPayload"]
    assert upload["additionalProperties"] is False
    assert upload["properties"]["sha256"]["pattern"] == "^[0-9a-f]{64}$"
    assert upload["properties"]["size"]["minimum"] == 0
    assert set(upload["required"]) == {
        "folder",
        "file_id",
        "name",
        "size",
        "content_type",
        "sha256",
    }


def test_close_and_error_codes_come_from_secure_ws_codes(document: dict[str, Any]) -> None:
    assert [c["code"] for c in document["x-close-codes"]] == [int(c) for c in CloseCode]
    assert [e["code"] for e in document["x-error-codes"]] == [c.value for c in ErrorCode]
    assert all(c["meaning"] for c in document["x-close-codes"])


def test_ws_schema_without_secure_ws_consumers_is_an_error() -> None:
    with pytest.raises(CommandError, match="no secure_ws consumer"):
        ws_schema("--routing", "tests.test_protocol.NO_ROUTES")


NO_ROUTES: list[Any] = []
