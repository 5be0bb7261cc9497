"""``FileEventConsumer``: live file events of shared folders, and the folder policy.

Client types (DESIGN.md): ``subscribe``/``unsubscribe`` a folder (read permission),
``file_upload``/``file_delete`` (write permission, broadcast as ``file.uploaded`` /
``file.deleted``), ``resync`` (read permission; answered with ``folder.state``), plus the
base ``ping`` and ``auth.refresh``.

Who may read or write a folder is decided by the class named in the ``FOLDER_POLICY``
setting (a :class:`FolderPolicy`); with none configured every folder is refused (fail
closed). Override :meth:`FileEventConsumer.get_folder_policy` to choose per consumer.

Read access is not only checked at ``subscribe``: a user removed from a folder must stop
receiving its events without reconnecting. The project calls :func:`folder_access_changed`
(or :func:`afolder_access_changed`) after such a change commits, and every live connection
of that user, on every process, asks ``can_read`` again at once; a refused one leaves the
folder and is told ``folder.revoked``. As a backstop for changes that never call the hook,
an event is forwarded only while read access was confirmed less than
``SUBSCRIPTION_RECHECK_INTERVAL`` seconds ago; an older confirmation is re-checked first.
"""

from __future__ import annotations

import logging
import time
from functools import lru_cache
from typing import Any, ClassVar, Protocol, runtime_checkable

from asgiref.sync import async_to_sync
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string
from pydantic import BaseModel

from secure_ws.codes import ErrorCode
from secure_ws.conf import get_settings, register_cache_clearer
from secure_ws.consumer.limits import TokenBucket
from secure_ws.consumer.loop import event_handler
from secure_ws.consumer.messages import ClientMessage, message_handler
from secure_ws.consumer.permissions import BasePermission, IsAuthenticated
from secure_ws.consumer.secure import SecureJsonWebsocketConsumer
from secure_ws.contrib.files.events import (
    FILE_EVENT_LAYER_TYPE,
    apublish_file_event,
    current_sequence,
    folder_group,
)
from secure_ws.contrib.files.schemas import (
    FileDeleted,
    FileDeletePayload,
    FileEventPayload,
    FileUploaded,
    FileUploadPayload,
    FolderFile,
    FolderPayload,
    FolderRevokedPayload,
    FolderStatePayload,
    ResyncPayload,
    Sender,
    SubscribedPayload,
)
from secure_ws.exceptions import MessageRejected
from secure_ws.sessions.pubsub import send_user_event

logger = logging.getLogger("secure_ws.files")


@runtime_checkable
class FolderPolicy(Protocol):
    """Decides who may read and write a folder. Every method is a coroutine.

    Implementations that query the database do so through ``database_sync_to_async``.
    """

    async def can_read(self, user: Any, folder: str) -> bool:
        """Return whether ``user`` may subscribe to ``folder`` and see its files."""
        ...

    async def can_write(self, user: Any, folder: str) -> bool:
        """Return whether ``user`` may announce uploads and deletions in ``folder``."""
        ...

    async def list_files(self, user: Any, folder: str) -> list[FolderFile]:
        """Return the files of ``folder`` for ``resync`` (``user`` may read it).

        Return them in a stable order: ``resync`` pages through the list by offset.
        """
        ...


class DenyAllFolderPolicy:
    """Refuses every folder: the policy when ``FOLDER_POLICY`` is not set."""

    async def can_read(self, user: Any, folder: str) -> bool:
        return False

    async def can_write(self, user: Any, folder: str) -> bool:
        return False

    async def list_files(self, user: Any, folder: str) -> list[FolderFile]:
        return []


@lru_cache(maxsize=1)
def get_folder_policy() -> FolderPolicy:
    """Return an instance of the ``FOLDER_POLICY`` class (deny-all when unset).

    Raises:
        ImportError: the dotted path does not import (the system check names it).
        ImproperlyConfigured: the class lacks a :class:`FolderPolicy` method.
    """
    path = get_settings().FOLDER_POLICY
    if path is None:
        logger.warning("FOLDER_POLICY is not set: every folder is refused")
        return DenyAllFolderPolicy()
    policy = import_string(path)()
    if not isinstance(policy, FolderPolicy):
        raise ImproperlyConfigured(
            f"FOLDER_POLICY {path!r} must define can_read, can_write and list_files"
        )
    return policy


register_cache_clearer(get_folder_policy.cache_clear)


class CanReadFolder(BasePermission):
    """Allows a message whose ``payload.folder`` the user may read."""

    async def has_permission(self, consumer: Any, message: ClientMessage[Any]) -> bool:
        policy = consumer.get_folder_policy()
        return bool(await policy.can_read(consumer.scope.get("user"), message.payload.folder))


class CanWriteFolder(BasePermission):
    """Allows a message whose ``payload.folder`` the user may write."""

    async def has_permission(self, consumer: Any, message: ClientMessage[Any]) -> bool:
        policy = consumer.get_folder_policy()
        return bool(await policy.can_write(consumer.scope.get("user"), message.payload.folder))


#: Client-facing event types the consumer forwards from the channel layer.
_FORWARDED_EVENTS = frozenset({"file.uploaded", "file.deleted"})

#: Event type (sent to a user's connections, :func:`~secure_ws.sessions.pubsub.send_user_event`)
#: that makes each one subscribed to the event's folder ask ``can_read`` again:
#: ``secure_ws_folder_access``.
FOLDER_ACCESS_EVENT_TYPE = "secure_ws.folder_access"


class FileEventConsumer(SecureJsonWebsocketConsumer):
    """Live file events of the folders a user may read (``/ws/files/`` in the demo)."""

    #: Folders one connection may be subscribed to at once.
    max_subscriptions: int = 100
    #: ``resync`` requests per second per connection (its own bucket, below MESSAGE_RATE).
    resync_rate: float = 1.0
    #: ``resync`` requests a connection may send in one burst.
    resync_burst: int = 5
    #: Files per ``folder.state`` page; ``next_offset`` tells the client there is more.
    folder_state_page_size: int = 100
    server_messages: ClassVar[dict[str, type[BaseModel]]] = {
        **SecureJsonWebsocketConsumer.server_messages,
        "file.uploaded": FileEventPayload,
        "file.deleted": FileEventPayload,
        "folder.state": FolderStatePayload,
        "folder.revoked": FolderRevokedPayload,
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.subscriptions: set[str] = set()
        #: When ``can_read`` last allowed each subscribed folder (``time.monotonic()``).
        self.read_confirmed_at: dict[str, float] = {}
        self._resync_bucket: TokenBucket | None = None

    def get_folder_policy(self) -> FolderPolicy:
        """Return the policy that decides folder access (``FOLDER_POLICY`` by default)."""
        return get_folder_policy()

    def get_sender(self) -> Sender:
        """Return who this connection is, as events name the sender (never client data)."""
        info = self.connection
        return Sender(user_id=info.user_id, username=info.username)

    @message_handler("subscribe", schema=FolderPayload, permissions=[CanReadFolder])
    async def handle_subscribe(self, message: ClientMessage[FolderPayload]) -> None:
        """Join the folder's events; the ``ack`` carries the folder's current ``seq``."""
        folder = message.payload.folder
        if folder not in self.subscriptions:
            if len(self.subscriptions) >= self.max_subscriptions:
                raise MessageRejected(ErrorCode.INVALID_MESSAGE, "Too many subscriptions")
            await self.join_group(folder_group(folder))
            self.subscriptions.add(folder)
        self.read_confirmed_at[folder] = time.monotonic()  # CanReadFolder just allowed it
        seq = await current_sequence(folder)
        await self.send_message("ack", SubscribedPayload(folder=folder, seq=seq), id=message.id)

    @message_handler("unsubscribe", schema=FolderPayload, permissions=[IsAuthenticated])
    async def handle_unsubscribe(self, message: ClientMessage[FolderPayload]) -> None:
        """Leave the folder's events."""
        folder = message.payload.folder
        self.subscriptions.discard(folder)
        self.read_confirmed_at.pop(folder, None)
        await self.leave_group(folder_group(folder))
        await self.send_message("ack", {"folder": folder}, id=message.id)

    @message_handler("file_upload", schema=FileUploadPayload, permissions=[CanWriteFolder])
    async def handle_file_upload(self, message: ClientMessage[FileUploadPayload]) -> None:
        """Announce a stored file to the folder as ``file.uploaded``."""
        payload = message.payload
        event = FileUploaded(
            file_id=payload.file_id,
            name=payload.name,
            size=payload.size,
            content_type=payload.content_type,
            sha256=payload.sha256,
        )
        published = await apublish_file_event(
            payload.folder, event, sender=self.get_sender(), origin=self.connection
        )
        await self.send_message(
            "ack", {"folder": payload.folder, "seq": published.seq}, id=message.id
        )

    @message_handler("file_delete", schema=FileDeletePayload, permissions=[CanWriteFolder])
    async def handle_file_delete(self, message: ClientMessage[FileDeletePayload]) -> None:
        """Announce a removed file to the folder as ``file.deleted``."""
        payload = message.payload
        published = await apublish_file_event(
            payload.folder,
            FileDeleted(file_id=payload.file_id, name=payload.name),
            sender=self.get_sender(),
            origin=self.connection,
        )
        await self.send_message(
            "ack", {"folder": payload.folder, "seq": published.seq}, id=message.id
        )

    @message_handler("resync", schema=ResyncPayload, permissions=[CanReadFolder])
    async def handle_resync(self, message: ClientMessage[ResyncPayload]) -> None:
        """Answer ``folder.state``: a page of the folder's files and the ``seq`` before them.

        ``resync`` is the expensive request (a listing query and the largest reply), so it
        has its own bucket (``resync_rate`` per second, bursts of ``resync_burst``) below
        the message rate, and a reply holds at most ``folder_state_page_size`` files.
        """
        bucket = self._resync_bucket
        if bucket is None:
            bucket = self._resync_bucket = TokenBucket(self.resync_rate, self.resync_burst)
        if not bucket.allow():
            raise MessageRejected(ErrorCode.RATE_LIMITED, "Too many resync requests")
        folder, offset = message.payload.folder, message.payload.offset
        # Read seq first: events after it may already be in the list; clients apply
        # file.uploaded/file.deleted idempotently by file_id.
        seq = await current_sequence(folder)
        files = await self.get_folder_policy().list_files(self.scope.get("user"), folder)
        end = offset + self.folder_state_page_size
        state = FolderStatePayload(
            folder=folder,
            seq=seq,
            files=files[offset:end],
            offset=offset,
            next_offset=end if end < len(files) else None,
        )
        await self.send_message("folder.state", state, id=message.id)

    @event_handler
    async def secure_ws_file_event(self, event: dict[str, Any]) -> None:
        """Channel-layer ``secure_ws.file_event``: forward it to a subscribed client."""
        kind = event.get("event")
        payload = event.get("payload")
        if kind not in _FORWARDED_EVENTS or not isinstance(payload, dict):
            logger.warning(
                "dropped malformed %s: connection_id=%s",
                FILE_EVENT_LAYER_TYPE,
                self.connection.connection_id,
            )
            return
        if payload.get("folder") not in self.subscriptions:
            return  # a late delivery after unsubscribe
        if not await self._read_access_current(str(payload["folder"])):
            return
        # Dropped and counted while the client leaves too much unread (slow consumer).
        await self.send_event(str(kind), payload)

    # ------------------------------------------------------------------ read access over time

    @event_handler
    async def secure_ws_folder_access(self, event: dict[str, Any]) -> None:
        """Channel-layer ``secure_ws.folder_access``: re-check read access to one folder now."""
        folder = event.get("folder")
        if isinstance(folder, str) and folder in self.subscriptions:
            await self._recheck_read_access(folder)

    async def _read_access_current(self, folder: str) -> bool:
        """Return whether an event of subscribed ``folder`` may be forwarded now.

        A confirmation younger than ``SUBSCRIPTION_RECHECK_INTERVAL`` is trusted; an older
        one is checked again first, so access lost without a :func:`folder_access_changed`
        call stops delivery within that interval plus one event.
        """
        confirmed = self.read_confirmed_at.get(folder)
        interval = get_settings().SUBSCRIPTION_RECHECK_INTERVAL
        if confirmed is not None and time.monotonic() - confirmed < interval:
            return True
        return await self._recheck_read_access(folder)

    async def _recheck_read_access(self, folder: str) -> bool:
        """Ask ``can_read`` again: revoke on a refusal, drop the event on a failure.

        A check that raises (database down) fails closed for the event at hand only: the
        connection stays, and the next event asks again.
        """
        started = time.monotonic()
        self.read_confirmed_at.pop(folder, None)  # until confirmed again, every event asks
        try:
            allowed = await self.get_folder_policy().can_read(self.scope.get("user"), folder)
        except Exception as exc:
            logger.warning(
                "read access check failed (%s): events held back, connection_id=%s",
                type(exc).__name__,
                self.connection.connection_id,
            )
            return False
        if folder not in self.subscriptions:
            return False
        if allowed:
            self.read_confirmed_at[folder] = started
            return True
        await self._revoke_subscription(folder)
        return False

    async def _revoke_subscription(self, folder: str) -> None:
        """Stop ``folder``'s events on this connection and tell the client why."""
        self.subscriptions.discard(folder)  # from here on, nothing of it is forwarded
        self.read_confirmed_at.pop(folder, None)
        self.security_event("folder_revoked", f"read access to folder {folder} ended")
        await self.send_message("folder.revoked", FolderRevokedPayload(folder=folder))
        try:
            await self.leave_group(folder_group(folder))
        except Exception:
            # Deliveries still arriving are dropped: the folder is no longer subscribed.
            logger.warning(
                "group_discard failed after a revocation: connection_id=%s",
                self.connection.connection_id,
            )


async def afolder_access_changed(user_id: int | str, folder: str) -> None:
    """Make ``user_id``'s live connections re-check read access to ``folder`` now.

    Call it after a change that may take read access away (a membership removed or moved,
    a folder deleted or renamed) has been committed, e.g. from ``transaction.on_commit``.
    The event reaches every connection of the user on every process through the
    connection registry's pub/sub message (one ``PUBLISH``); each one subscribed to
    ``folder`` asks ``can_read`` again and, if refused, leaves the folder's group,
    forwards none of its events from then on and sends ``folder.revoked``. Calling it when
    access did not change is harmless (one ``can_read`` per subscribed connection).

    Raises:
        ValueError: ``folder`` is not a valid folder id.
        BackendUnavailable: Redis is not reachable; delivery then still stops within
            ``SUBSCRIPTION_RECHECK_INTERVAL`` through the re-check on delivery.
    """
    try:
        folder = FolderPayload(folder=folder).folder
    except ValueError:
        raise ValueError("invalid folder id") from None
    await send_user_event(user_id, {"type": FOLDER_ACCESS_EVENT_TYPE, "folder": folder})


def folder_access_changed(user_id: int | str, folder: str) -> None:
    """Synchronous :func:`afolder_access_changed` for signal receivers, views and tasks.

    Do not call it from a running event loop; await :func:`afolder_access_changed` there.

    Raises:
        ValueError: ``folder`` is not a valid folder id.
        BackendUnavailable: Redis is not reachable.
    """
    async_to_sync(afolder_access_changed)(user_id, folder)
