"""``FileEventConsumer``: live file events of shared folders, and the folder policy.

Client types (DESIGN.md): ``subscribe``/``unsubscribe`` a folder (read permission),
``file_upload``/``file_delete`` (write permission, broadcast as ``file.uploaded`` /
``file.deleted``), ``resync`` (read permission; answered with ``folder.state``), plus the
base ``ping`` and ``auth.refresh``.

Who may read or write a folder is decided by the class named in the ``FOLDER_POLICY``
setting (a :class:`FolderPolicy`); with none configured every folder is refused (fail
closed). Override :meth:`FileEventConsumer.get_folder_policy` to choose per consumer.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any, ClassVar, Protocol, runtime_checkable

from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string
from pydantic import BaseModel

from secure_ws.codes import ErrorCode
from secure_ws.conf import get_settings, register_cache_clearer
from secure_ws.consumers import SecureJsonWebsocketConsumer
from secure_ws.events import (
    FILE_EVENT_LAYER_TYPE,
    apublish_file_event,
    current_sequence,
    folder_group,
)
from secure_ws.exceptions import MessageRejected
from secure_ws.file_schemas import (
    FileDeleted,
    FileDeletePayload,
    FileEventPayload,
    FileUploaded,
    FileUploadPayload,
    FolderFile,
    FolderPayload,
    FolderStatePayload,
    ResyncPayload,
    Sender,
    SubscribedPayload,
)
from secure_ws.limits import TokenBucket
from secure_ws.messages import ClientMessage, message_handler
from secure_ws.permissions import BasePermission, IsAuthenticated

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
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.subscriptions: set[str] = set()
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
        seq = await current_sequence(folder)
        await self.send_message("ack", SubscribedPayload(folder=folder, seq=seq), id=message.id)

    @message_handler("unsubscribe", schema=FolderPayload, permissions=[IsAuthenticated])
    async def handle_unsubscribe(self, message: ClientMessage[FolderPayload]) -> None:
        """Leave the folder's events."""
        folder = message.payload.folder
        self.subscriptions.discard(folder)
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
            FileDeleted(file_id=payload.file_id),
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
        # Dropped and counted while the client leaves too much unread (slow consumer).
        await self.send_event(str(kind), payload)
