"""Read access follows membership on real servers: a removed member stops receiving events.

Demo users: alice writes ``team``, carol reads it. Membership changes happen in this test
process through the ORM, committed, as an admin or a view would make them; the server
process learns of them through ``folder_access_changed`` (the demo's signal receivers) or,
when nothing calls it, through its re-check on delivery. Every test runs on daphne and on
uvicorn (``servers`` marker).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from websockets.asyncio.client import ClientConnection

from project.filebox.models import Membership
from secure_ws.audit.models import SecurityEvent
from secure_ws.codes import ErrorCode
from tests.e2e.test_files_e2e import (
    HANG_GUARD,
    ask,
    frame_of_type,
    next_frame,
    nothing_arrives,
    open_ws,
    subscribe,
    upload_frame,
)
from tests.test_revocation import in_thread

pytestmark = [pytest.mark.e2e, pytest.mark.servers]

SERVER_ENV = {
    # alice publishes as fast as the server answers; the message limit has its own tests.
    "SECURE_WS_MESSAGE_RATE": "1000",
    "SECURE_WS_HANDSHAKE_RATE": "100000",
}


@pytest.fixture
def start(asgi_server: Callable[..., Any], tmp_path: Any) -> Callable[..., Any]:
    def start_server(settings_module: str = "tests.settings") -> Any:
        env = {**SERVER_ENV, "MEDIA_ROOT": str(tmp_path / "media")}
        return asgi_server(env=env, settings_module=settings_module)

    return start_server


async def publish(alice: ClientConnection) -> None:
    """alice announces an upload and sees it arrive herself (she is subscribed)."""
    frame = upload_frame()
    await alice.send(json.dumps(frame))
    while True:
        event = await frame_of_type(alice, "file.uploaded")
        if event["payload"]["file_id"] == frame["payload"]["file_id"]:
            return


async def receives_no_more_events(alice: ClientConnection, carol: ClientConnection) -> bool:
    for _ in range(3):
        await publish(alice)
    return await nothing_arrives(carol)


async def until(predicate: Callable[[], bool]) -> bool:
    check = in_thread(predicate)
    deadline = asyncio.get_running_loop().time() + HANG_GUARD
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.1)
    return True


def membership(user: Any) -> Membership:
    return Membership.objects.get(user=user, folder__slug="team")


async def test_a_member_removed_from_a_folder_is_told_and_receives_none_of_its_events(
    start: Callable[..., Any], demo_users: dict[str, Any], token_for: Any
) -> None:
    server = start()
    alice = await open_ws(server, token_for(demo_users["alice"]))
    carol = await open_ws(server, token_for(demo_users["carol"]))
    await subscribe(alice)
    await subscribe(carol)
    await publish(alice)
    assert (await next_frame(carol))["type"] == "file.uploaded"

    # The default SUBSCRIPTION_RECHECK_INTERVAL (60 s) is far away: only the hook can do it.
    await in_thread(lambda: membership(demo_users["carol"]).delete())()

    assert await next_frame(carol) == {"type": "folder.revoked", "payload": {"folder": "team"}}
    assert await receives_no_more_events(alice, carol)
    refused = await subscribe(carol)
    assert refused["payload"]["code"] == ErrorCode.FORBIDDEN
    assert (await ask(carol, {"type": "ping"}))["type"] == "pong"
    assert await until(
        lambda: SecurityEvent.objects.filter(
            kind="folder_revoked", record__user=demo_users["carol"]
        ).exists()
    )
    await alice.close()
    await carol.close()


def delete_membership_behind_the_orms_back(user: Any) -> None:
    """Raw SQL: no model signal runs, so nothing calls ``folder_access_changed``."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {Membership._meta.db_table} WHERE id = %s",
            [membership(user).pk],
        )


async def test_without_the_hook_delivery_stops_within_the_recheck_interval(
    start: Callable[..., Any], demo_users: dict[str, Any], token_for: Any
) -> None:
    server = start("tests.e2e.recheck_settings")
    alice = await open_ws(server, token_for(demo_users["alice"]))
    carol = await open_ws(server, token_for(demo_users["carol"]))
    await subscribe(alice)
    await subscribe(carol)
    await publish(alice)
    assert (await next_frame(carol))["type"] == "file.uploaded"

    await in_thread(delete_membership_behind_the_orms_back)(demo_users["carol"])

    # alice keeps publishing; within the interval carol may still see some, then never.
    deadline = asyncio.get_running_loop().time() + HANG_GUARD
    while True:
        await publish(alice)
        frame = await next_frame(carol)
        if frame["type"] == "folder.revoked":
            break
        assert frame["type"] == "file.uploaded"
        assert asyncio.get_running_loop().time() < deadline, "events kept flowing"
    assert frame["payload"] == {"folder": "team"}
    assert await receives_no_more_events(alice, carol)
    await alice.close()
    await carol.close()


async def test_a_writer_downgraded_to_reader_is_refused_writes_at_once_and_keeps_reading(
    start: Callable[..., Any], demo_users: dict[str, Any], token_for: Any
) -> None:
    server = start()
    alice = await open_ws(server, token_for(demo_users["alice"]))
    bob = await open_ws(server, token_for(demo_users["bob"]))
    await subscribe(alice)
    await subscribe(bob)
    assert (await ask(alice, upload_frame()))["type"] == "ack"

    def downgrade() -> None:
        row = membership(demo_users["alice"])
        row.access = Membership.READ
        row.save()

    await in_thread(downgrade)()

    refused = await ask(alice, upload_frame())
    assert refused["payload"]["code"] == ErrorCode.FORBIDDEN
    await publish(bob)
    while (frame := await next_frame(alice))["payload"].get("sender", {}).get("username") != "bob":
        assert frame["type"] != "folder.revoked"
    assert frame["type"] == "file.uploaded"
    await alice.close()
    await bob.close()
