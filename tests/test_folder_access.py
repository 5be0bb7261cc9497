"""Read access over a subscription's life: ``folder_access_changed`` and the re-check on delivery.

The demo's receivers call the hook for every membership or folder change that can take
read access away; the consumer re-checks ``can_read`` before forwarding an event once its
last confirmation is older than ``SUBSCRIPTION_RECHECK_INTERVAL``, and fails closed for
that event when the check itself fails. Real channels-redis layer, demo users from
``demo_seed`` (alice and bob write ``team``, carol reads it, mallory has nothing).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from django.conf import settings
from django.db import DatabaseError
from django.test import override_settings

from project.filebox.models import Folder, Membership
from project.filebox.policy import MembershipFolderPolicy
from secure_ws.contrib.files.consumer import FileEventConsumer, FolderPolicy, afolder_access_changed
from secure_ws.contrib.files.events import apublish_file_event
from secure_ws.contrib.files.schemas import FileDeleted
from secure_ws.state import close_redis
from tests.consumer_helpers import communicator, receive_frame, request
from tests.test_revocation import in_thread

REVOKED = {"type": "folder.revoked", "payload": {"folder": "team"}}


@pytest.fixture(autouse=True)
async def _close_shared_redis() -> AsyncIterator[None]:
    yield
    await close_redis()


class FlakyPolicy(MembershipFolderPolicy):
    """The demo policy, counting ``can_read`` calls, with a switchable database outage."""

    def __init__(self) -> None:
        self.reads = 0
        self.down = False

    async def can_read(self, user: Any, folder: str) -> bool:
        self.reads += 1
        if self.down:
            raise DatabaseError("connection refused")
        return await super().can_read(user, folder)


def consumer_with(policy: FolderPolicy) -> type[FileEventConsumer]:
    class Consumer(FileEventConsumer):
        def get_folder_policy(self) -> FolderPolicy:
            return policy

    return Consumer


async def subscribed(user: Any, consumer: type[FileEventConsumer] = FileEventConsumer) -> Any:
    comm = communicator(consumer, user, path="/ws/files/")
    connected, _ = await comm.connect()
    assert connected
    reply = await request(comm, {"type": "subscribe", "id": "s", "payload": {"folder": "team"}})
    assert reply["type"] == "ack", reply
    return comm


async def publish() -> int:
    return (await apublish_file_event("team", FileDeleted(file_id=uuid.uuid4()))).seq


def recheck_every(seconds: float) -> Any:
    return override_settings(
        SECURE_WS={**settings.SECURE_WS, "SUBSCRIPTION_RECHECK_INTERVAL": seconds}
    )


async def test_a_confirmed_subscription_is_not_rechecked_before_the_interval(
    demo_users: dict[str, Any],
) -> None:
    policy = FlakyPolicy()
    carol = await subscribed(demo_users["carol"], consumer_with(policy))
    for _ in range(3):
        seq = await publish()
        assert (await receive_frame(carol))["payload"]["seq"] == seq
    assert policy.reads == 1  # the subscribe
    with recheck_every(0):
        await publish()
        await receive_frame(carol)
    assert policy.reads == 2
    await carol.disconnect()


async def test_a_failing_read_check_drops_the_event_and_keeps_the_connection(
    demo_users: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    policy = FlakyPolicy()
    with recheck_every(0), caplog.at_level(logging.WARNING, "secure_ws.files"):
        carol = await subscribed(demo_users["carol"], consumer_with(policy))
        policy.down = True
        await publish()
        assert await carol.receive_nothing(0.3)
        assert "read access check failed (DatabaseError)" in caplog.text
        assert (await request(carol, {"type": "ping", "id": "p"}))["type"] == "pong"
        policy.down = False
        seq = await publish()
        event = await receive_frame(carol)
        assert event["type"] == "file.deleted"
        assert event["payload"]["seq"] == seq
        await carol.disconnect()


async def test_the_hook_leaves_a_reader_subscribed(demo_users: dict[str, Any]) -> None:
    carol = await subscribed(demo_users["carol"])
    await afolder_access_changed(demo_users["carol"].pk, "team")
    seq = await publish()
    assert (await receive_frame(carol))["payload"]["seq"] == seq
    await carol.disconnect()


@pytest.mark.parametrize("folder", ["../x", "a b", "", "x" * 65])
async def test_the_hook_refuses_an_invalid_folder_id(folder: str) -> None:
    with pytest.raises(ValueError, match="invalid folder id"):
        await afolder_access_changed(1, folder)


def delete_team() -> None:
    Folder.objects.get(slug="team").delete()


def rename_team() -> None:
    folder = Folder.objects.get(slug="team")
    folder.slug = "team-2025"
    folder.save()


def give_carols_membership_to_mallory() -> None:
    row = Membership.objects.get(folder__slug="team", user__username="carol")
    row.user = Membership.user.field.related_model.objects.get(username="mallory")
    row.save()


@pytest.mark.parametrize("change", [delete_team, rename_team, give_carols_membership_to_mallory])
async def test_demo_changes_that_take_read_access_away_revoke_at_once(
    demo_users: dict[str, Any], change: Any
) -> None:
    carol = await subscribed(demo_users["carol"])
    await in_thread(change)()
    assert await receive_frame(carol) == REVOKED
    await publish()
    assert await carol.receive_nothing(0.3)
    await carol.disconnect()
