"""FileEventConsumer, the folder policy, publish_file_event and the demo's HTTP API.

Group behaviour runs on the real channels-redis layer (tests.settings); the demo users
come from ``demo_seed``: alice and bob write ``team``, carol reads it, mallory has nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings
from rest_framework.test import APIClient

from project.filebox.models import Folder, StoredFile
from secure_ws.codes import ErrorCode
from secure_ws.consumer import fanout
from secure_ws.contrib.files import events
from secure_ws.contrib.files.consumer import FileEventConsumer
from secure_ws.contrib.files.events import (
    FILE_EVENT_LAYER_TYPE,
    apublish_file_event,
    folder_group,
    publish_file_event,
)
from secure_ws.contrib.files.schemas import FileDeleted, FileUploaded, Sender
from secure_ws.state import close_redis
from tests.consumer_helpers import communicator, receive_frame, request

SHA = "a" * 64


@pytest.fixture(autouse=True)
async def _close_shared_redis() -> AsyncIterator[None]:
    yield
    await close_redis()


@pytest.fixture
def users(demo_users: dict[str, Any]) -> dict[str, Any]:
    return demo_users


def upload(folder: str = "team", **overrides: Any) -> dict[str, Any]:
    payload = {
        "folder": folder,
        "file_id": str(uuid.uuid4()),
        "name": "report.pdf",
        "size": 1024,
        "content_type": "application/pdf",
        "sha256": SHA,
    }
    payload.update(overrides)
    return {"type": "file_upload", "id": "u1", "payload": payload}


async def connect(user: Any) -> Any:
    comm = communicator(FileEventConsumer, user, path="/ws/files/")
    connected, _ = await comm.connect()
    assert connected
    return comm


async def subscribed(user: Any, folder: str = "team") -> Any:
    comm = await connect(user)
    reply = await request(comm, {"type": "subscribe", "id": "s", "payload": {"folder": folder}})
    assert reply["type"] == "ack", reply
    return comm


# ---------------------------------------------------------------------- subscribe


async def test_a_read_member_can_subscribe_and_learns_the_current_seq(users: Any) -> None:
    comm = await connect(users["carol"])
    reply = await request(comm, {"type": "subscribe", "id": "s1", "payload": {"folder": "team"}})
    assert reply["type"] == "ack"
    assert reply["id"] == "s1"
    assert reply["payload"]["folder"] == "team"
    assert isinstance(reply["payload"]["seq"], int)
    await comm.disconnect()


@pytest.mark.parametrize("folder", ["team", "secret", "nonexistent"])
async def test_a_non_member_cannot_subscribe(users: Any, folder: str) -> None:
    comm = await connect(users["mallory"])
    reply = await request(comm, {"type": "subscribe", "id": "s2", "payload": {"folder": folder}})
    assert reply["payload"]["code"] == ErrorCode.FORBIDDEN
    assert reply["id"] == "s2"
    await comm.disconnect()


async def test_without_a_folder_policy_every_folder_is_refused(users: Any) -> None:
    with override_settings(SECURE_WS={"REQUIRE_TLS": False, "FOLDER_POLICY": None}):
        comm = await connect(users["alice"])
        reply = await request(comm, {"type": "subscribe", "payload": {"folder": "team"}})
        assert reply["payload"]["code"] == ErrorCode.FORBIDDEN
        await comm.disconnect()


# ---------------------------------------------------------------------- fan-out


async def test_an_upload_fans_out_to_subscribed_members_only(users: Any) -> None:
    alice = await subscribed(users["alice"])
    carol = await subscribed(users["carol"])
    mallory = await connect(users["mallory"])
    bob_unsubscribed = await connect(users["bob"])
    message = upload()
    await alice.send_json_to(message)
    frames = [await receive_frame(alice), await receive_frame(alice)]
    ack = next(f for f in frames if f["type"] == "ack")
    event = next(f for f in frames if f["type"] == "file.uploaded")
    assert ack["id"] == "u1"
    carol_event = await receive_frame(carol)
    assert carol_event == event
    payload = event["payload"]
    assert payload["folder"] == "team"
    assert payload["file_id"] == message["payload"]["file_id"]
    assert payload["seq"] == ack["payload"]["seq"]
    assert payload["sender"] == {"user_id": users["alice"].pk, "username": "alice"}
    assert isinstance(payload["timestamp"], float)
    assert "id" not in event
    assert await mallory.receive_nothing(0.3)
    assert await bob_unsubscribed.receive_nothing(0.1)
    for comm in (alice, carol, mallory, bob_unsubscribed):
        await comm.disconnect()


async def test_a_read_member_cannot_announce_uploads_or_deletions(users: Any) -> None:
    comm = await subscribed(users["carol"])
    assert (await request(comm, upload()))["payload"]["code"] == ErrorCode.FORBIDDEN
    delete = {"type": "file_delete", "payload": {"folder": "team", "file_id": str(uuid.uuid4())}}
    assert (await request(comm, delete))["payload"]["code"] == ErrorCode.FORBIDDEN
    await comm.disconnect()


async def test_a_client_cannot_choose_the_sender_timestamp_or_seq(users: Any) -> None:
    comm = await subscribed(users["alice"])
    for key, value in (("sender", "admin"), ("timestamp", 1.0), ("seq", 99), ("type", "x")):
        message = upload()
        message["payload"][key] = value
        reply = await request(comm, message)
        assert reply["payload"]["code"] == ErrorCode.INVALID_MESSAGE, key
    await comm.disconnect()


async def test_a_delete_is_broadcast_as_file_deleted(users: Any) -> None:
    alice = await subscribed(users["alice"])
    carol = await subscribed(users["carol"])
    file_id = str(uuid.uuid4())
    await alice.send_json_to(
        {"type": "file_delete", "payload": {"folder": "team", "file_id": file_id}}
    )
    event = await receive_frame(carol)
    assert event["type"] == "file.deleted"
    assert event["payload"]["file_id"] == file_id
    assert event["payload"]["sender"]["username"] == "alice"
    assert "name" not in event["payload"]  # none given, none made up
    await alice.disconnect()
    await carol.disconnect()


async def test_a_delete_names_the_file_when_the_writer_does(users: Any) -> None:
    alice = await subscribed(users["alice"])
    carol = await subscribed(users["carol"])
    file_id = str(uuid.uuid4())
    refused = await request(
        alice,
        {"type": "file_delete", "payload": {"folder": "team", "file_id": file_id, "name": "../x"}},
    )
    assert refused["payload"]["code"] == ErrorCode.INVALID_MESSAGE  # a name, never a path
    await alice.send_json_to(
        {"type": "file_delete", "payload": {"folder": "team", "file_id": file_id, "name": "q3.pdf"}}
    )
    event = await receive_frame(carol)
    assert (event["type"], event["payload"]["name"]) == ("file.deleted", "q3.pdf")
    await alice.disconnect()
    await carol.disconnect()


async def test_unsubscribe_stops_the_events(users: Any) -> None:
    alice = await subscribed(users["alice"])
    carol = await subscribed(users["carol"])
    reply = await request(carol, {"type": "unsubscribe", "payload": {"folder": "team"}})
    assert reply == {"type": "ack", "payload": {"folder": "team"}}
    await alice.send_json_to(upload())
    await receive_frame(alice)
    assert await carol.receive_nothing(0.3)
    await alice.disconnect()
    await carol.disconnect()


async def test_sequence_numbers_increase_by_one_per_event_of_a_folder(
    users: Any, redis_client: Any
) -> None:
    carol = await subscribed(users["carol"])
    first = await apublish_file_event("team", FileDeleted(file_id=uuid.uuid4()))
    second = await apublish_file_event("team", FileDeleted(file_id=uuid.uuid4()))
    assert second.seq == first.seq + 1
    seqs = [(await receive_frame(carol))["payload"]["seq"] for _ in range(2)]
    assert seqs == [first.seq, second.seq]
    stored = redis_client.get(events.key("folder_seq", "team"))
    assert int(stored) == second.seq
    await carol.disconnect()


# ---------------------------------------------------------------------- validation


BAD_UPLOAD_FIELDS: list[tuple[str, Any]] = [
    ("name", "../etc/passwd"),
    ("name", "a/b"),
    ("name", "a\\b"),
    ("name", "nul\x00.txt"),
    ("name", "bell\x07.txt"),
    ("name", "line\nbreak.txt"),
    ("name", "invoice\u202egpj.exe"),
    ("name", "iso\u2066late"),
    ("name", ".."),
    ("name", "."),
    ("name", ""),
    ("name", "é" * 128),
    ("name", 5),
    ("size", -1),
    ("size", 5 * 1024**3 + 1),
    ("size", 1.5),
    ("size", True),
    ("size", "10"),
    ("content_type", "text/html"),
    ("content_type", "application/x-msdownload"),
    ("content_type", "TEXT/PLAIN"),
    ("sha256", "A" * 64),
    ("sha256", "a" * 63),
    ("sha256", "g" * 64),
    ("file_id", "not-a-uuid"),
    ("file_id", "../../x"),
    ("folder", "../team"),
    ("folder", "team.other"),
    ("folder", "t" * 65),
    ("folder", ""),
    ("folder", "team name"),
]


@pytest.mark.parametrize(("field", "value"), BAD_UPLOAD_FIELDS)
async def test_bad_upload_fields_are_refused_with_a_field_error(
    users: Any, field: str, value: Any
) -> None:
    comm = await connect(users["alice"])
    reply = await request(comm, upload(**{field: value}))
    assert reply["type"] == "error"
    assert reply["payload"]["code"] == ErrorCode.INVALID_MESSAGE
    assert ["payload", field] in [e["loc"] for e in reply["payload"]["errors"]]
    if isinstance(value, str) and len(value) > 2:
        assert value not in json.dumps(reply)
    await comm.disconnect()


@pytest.mark.parametrize(
    "name", ["report.pdf", "Überweisung 2026.pdf", "日本語.txt", "x" * 255, "a.b.c", "emoji 🙂"]
)
async def test_ordinary_display_names_are_accepted(users: Any, name: str) -> None:
    comm = await connect(users["alice"])
    assert (await request(comm, upload(name=name)))["type"] == "ack"
    await comm.disconnect()


async def test_max_file_size_and_content_types_follow_the_settings(users: Any) -> None:
    overrides = {
        "REQUIRE_TLS": False,
        "FOLDER_POLICY": "project.filebox.policy.MembershipFolderPolicy",
        "MAX_FILE_SIZE": 100,
        "ALLOWED_CONTENT_TYPES": ["text/html"],
    }
    with override_settings(SECURE_WS=overrides):
        comm = await connect(users["alice"])
        big = await request(comm, upload(size=101, content_type="text/html"))
        assert big["payload"]["errors"][0]["loc"] == ["payload", "size"]
        ok = await request(comm, upload(size=100, content_type="text/html"))
        assert ok["type"] == "ack"
        await comm.disconnect()


# ---------------------------------------------------------------------- resync


async def test_resync_answers_the_folders_file_list_and_seq(users: Any) -> None:
    folder = await sync_to_async(Folder.objects.get)(slug="team")
    stored = await sync_to_async(StoredFile.objects.create)(
        folder=folder, name="a.txt", size=3, content_type="text/plain", sha256=SHA, file="x"
    )
    comm = await connect(users["carol"])
    reply = await request(comm, {"type": "resync", "id": "r", "payload": {"folder": "team"}})
    assert reply["type"] == "folder.state"
    assert reply["id"] == "r"
    assert reply["payload"]["folder"] == "team"
    assert isinstance(reply["payload"]["seq"], int)
    assert [f["file_id"] for f in reply["payload"]["files"]] == [str(stored.id)]
    denied = await connect(users["mallory"])
    reply = await request(denied, {"type": "resync", "payload": {"folder": "team"}})
    assert reply["payload"]["code"] == ErrorCode.FORBIDDEN
    await comm.disconnect()
    await denied.disconnect()


# ---------------------------------------------------------------------- publish API


async def test_the_channel_layer_event_type_is_fixed_by_the_server() -> None:
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(folder_group("fixedtype"), channel)
    event = FileUploaded(
        file_id=uuid.uuid4(), name="x.txt", size=1, content_type="text/plain", sha256=SHA
    )
    await apublish_file_event("fixedtype", event, sender=Sender(user_id=1, username="u"))
    received = await layer.receive(channel)
    assert received["type"] == FILE_EVENT_LAYER_TYPE
    assert received["event"] == "file.uploaded"
    assert received["payload"]["name"] == "x.txt"
    await layer.group_discard(folder_group("fixedtype"), channel)


async def test_publish_file_event_works_from_sync_code(users: Any) -> None:
    carol = await subscribed(users["carol"])

    def sync_caller() -> int:
        return publish_file_event("team", FileDeleted(file_id=uuid.uuid4())).seq

    seq = await sync_to_async(sync_caller)()
    event = await receive_frame(carol)
    assert event["payload"]["seq"] == seq
    assert event["payload"].get("sender") is None
    await carol.disconnect()


@pytest.mark.parametrize("folder", ["../x", "a b", "", "x" * 65])
async def test_publish_refuses_an_invalid_folder_id(folder: str) -> None:
    with pytest.raises(ValueError, match="invalid folder id"):
        await apublish_file_event(folder, FileDeleted(file_id=uuid.uuid4()))


async def test_drops_to_full_channels_are_counted_logged_and_audited(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.conf import settings

    recorded: list[tuple[str, str]] = []

    class Sink:
        def security_event(self, info: Any, kind: str, detail: str) -> None:
            recorded.append((kind, detail))

    monkeypatch.setattr(fanout, "get_audit_sink", lambda: Sink())
    layers = {
        "default": {
            **settings.CHANNEL_LAYERS["default"],
            "CONFIG": {**settings.CHANNEL_LAYERS["default"]["CONFIG"], "capacity": 1},
        }
    }
    with override_settings(CHANNEL_LAYERS=layers):
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(folder_group("full"), channel)
        before = fanout.dropped_deliveries.total
        with caplog.at_level(logging.WARNING, logger="secure_ws.fanout"):
            for _ in range(3):
                await apublish_file_event("full", FileDeleted(file_id=uuid.uuid4()))
        assert fanout.dropped_deliveries.total - before == 2
        assert fanout.dropped_deliveries.by_group[folder_group("full")] >= 2
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 2
        assert "folder full seq" in warnings[0].getMessage()
        assert [kind for kind, _ in recorded] == ["group_over_capacity"] * 2
        await layer.group_discard(folder_group("full"), channel)
        await layer.flush()


# ---------------------------------------------------------------------- HTTP API


@pytest.fixture
def media(tmp_path: Path) -> Any:
    with override_settings(MEDIA_ROOT=str(tmp_path)):
        yield tmp_path


def api_client(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


async def test_http_upload_stores_the_file_and_reaches_ws_subscribers(
    users: Any, media: Path
) -> None:
    carol = await subscribed(users["carol"])
    content = b"hello, folder\n" * 100
    file = SimpleUploadedFile("notes.txt", content, content_type="text/plain")

    def post() -> Any:
        return api_client(users["alice"]).post(
            "/api/folders/team/files/", {"file": file}, format="multipart"
        )

    response = await sync_to_async(post)()
    assert response.status_code == 201, response.content
    body = response.json()
    event = await receive_frame(carol)
    assert event["type"] == "file.uploaded"
    assert event["payload"]["file_id"] == body["file_id"]
    assert event["payload"]["sha256"] == hashlib.sha256(content).hexdigest()
    assert event["payload"]["size"] == len(content)
    assert event["payload"]["sender"]["username"] == "alice"
    stored = await sync_to_async(StoredFile.objects.get)(id=body["file_id"])
    assert await asyncio.to_thread(Path(stored.file.path).read_bytes) == content
    assert Path(stored.file.path).name == body["file_id"]
    await carol.disconnect()


async def test_http_delete_removes_the_file_and_announces_it(users: Any, media: Path) -> None:
    client = api_client(users["alice"])
    file = SimpleUploadedFile("gone.txt", b"bye", content_type="text/plain")
    created = await sync_to_async(client.post)(
        "/api/folders/team/files/", {"file": file}, format="multipart"
    )
    file_id = created.json()["file_id"]
    path = Path((await sync_to_async(StoredFile.objects.get)(id=file_id)).file.path)
    carol = await subscribed(users["carol"])
    response = await sync_to_async(client.delete)(f"/api/folders/team/files/{file_id}/")
    assert response.status_code == 204
    event = await receive_frame(carol)
    assert event["type"] == "file.deleted"
    assert event["payload"]["file_id"] == file_id
    assert event["payload"]["name"] == "gone.txt"  # the stored display name
    assert not await asyncio.to_thread(path.exists)
    assert not await sync_to_async(StoredFile.objects.filter(id=file_id).exists)()
    await carol.disconnect()


@pytest.mark.django_db(transaction=True)
def test_http_write_endpoints_need_write_membership(users: Any, media: Path) -> None:
    file_id = uuid.uuid4()
    carol, mallory = api_client(users["carol"]), api_client(users["mallory"])
    file = SimpleUploadedFile("x.txt", b"x", content_type="text/plain")
    assert (
        carol.post("/api/folders/team/files/", {"file": file}, format="multipart").status_code
        == 403
    )
    assert carol.delete(f"/api/folders/team/files/{file_id}/").status_code == 403
    assert mallory.get("/api/folders/team/files/").status_code == 404
    assert mallory.delete(f"/api/folders/team/files/{file_id}/").status_code == 404
    assert APIClient().get("/api/folders/").status_code == 401


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("name", "content_type"),
    [("page.html", "text/html"), ("x.exe", "application/x-msdownload"), ("é" * 128, "text/plain")],
)
def test_http_upload_refuses_disallowed_types_and_long_names(
    users: Any, media: Path, name: str, content_type: str
) -> None:
    file = SimpleUploadedFile(name, b"x", content_type=content_type)
    response = api_client(users["alice"]).post(
        "/api/folders/team/files/", {"file": file}, format="multipart"
    )
    assert response.status_code == 400
    assert not StoredFile.objects.exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("name", ["invoice\u202egpj.exe", "a\x01b.txt", "iso\u2066late.txt"])
def test_http_upload_never_stores_bidi_or_control_characters_in_names(
    users: Any, media: Path, name: str
) -> None:
    file = SimpleUploadedFile(name, b"x", content_type="text/plain")
    response = api_client(users["alice"]).post(
        "/api/folders/team/files/", {"file": file}, format="multipart"
    )
    # Django's multipart parser already drops non-printable characters; either way the
    # stored display name and the broadcast one are clean.
    assert response.status_code in {201, 400}
    for stored in StoredFile.objects.all():
        assert stored.name.isprintable()
        assert not set(stored.name) & set("\u202e\u2066\x01")


@pytest.mark.django_db(transaction=True)
def test_http_folder_list_shows_the_users_folders(users: Any, media: Path) -> None:
    assert api_client(users["carol"]).get("/api/folders/").json() == [
        {"folder": "team", "name": "Team", "access": "read"}
    ]
    assert api_client(users["mallory"]).get("/api/folders/").json() == []
    listing = api_client(users["carol"]).get("/api/folders/team/files/").json()
    assert listing == {"folder": "team", "files": []}


def test_a_folder_policy_without_the_protocol_methods_is_refused() -> None:
    from django.core.exceptions import ImproperlyConfigured

    from secure_ws.contrib.files.consumer import get_folder_policy

    overrides = {"REQUIRE_TLS": False, "FOLDER_POLICY": "collections.OrderedDict"}
    with override_settings(SECURE_WS=overrides), pytest.raises(ImproperlyConfigured):
        get_folder_policy()
    assert type(get_folder_policy()).__name__ == "MembershipFolderPolicy"
