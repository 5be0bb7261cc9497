"""Publish file events to a folder's WebSocket subscribers from server-side code.

Use :func:`apublish_file_event` from async code (consumers, async views) and
:func:`publish_file_event` from sync code (views, signal receivers, Celery tasks)::

    publish_file_event("team", FileUploaded(file_id=..., name="q3.pdf", size=1024,
                       content_type="application/pdf", sha256="..."), sender=Sender(...))

Each event gets a per-folder sequence number from one atomic Redis ``INCR`` (shared by
every process), so a client that sees a gap knows it missed an event and asks for
``resync``. channels-redis silently skips a group member whose channel is full (logged at
INFO only): :class:`OverCapacityMonitor` turns those records into a WARNING, a counter
and an audit record, so that no drop goes unnoticed.

The channel-layer event type is fixed here (:data:`FILE_EVENT_LAYER_TYPE`); client data
only ever travels inside the payload, so no client can pick which consumer method runs.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import redis.exceptions
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from pydantic import TypeAdapter, ValidationError

from secure_ws.audit.sink import get_audit_sink
from secure_ws.connection import ConnectionInfo
from secure_ws.contrib.files.schemas import (
    FileDeleted,
    FileEvent,
    FileEventPayload,
    FileUploaded,
    FolderId,
    Sender,
)
from secure_ws.exceptions import BackendUnavailable
from secure_ws.state import command_deadline, get_redis, get_sync_redis, key

logger = logging.getLogger("secure_ws.events")

#: The channel-layer event type of every file event; ``FileEventConsumer`` handles it in
#: ``secure_ws_file_event``.
FILE_EVENT_LAYER_TYPE = "secure_ws.file_event"
#: The client-facing type of each event class.
CLIENT_EVENT_TYPES: dict[type[FileEvent], str] = {
    FileUploaded: "file.uploaded",
    FileDeleted: "file.deleted",
}

_folder_id: TypeAdapter[str] = TypeAdapter(FolderId)


def folder_group(folder: str) -> str:
    """Return the channel-layer group of ``folder``'s subscribers."""
    return f"secure_ws.folder.{folder}"


# ---------------------------------------------------------------------- sequence numbers

_local_sequences: dict[str, int] = {}
_local_lock = threading.Lock()


def _next_local_sequence(folder: str) -> int:
    with _local_lock:
        _local_sequences[folder] = _local_sequences.get(folder, 0) + 1
        return _local_sequences[folder]


async def next_sequence(folder: str) -> int:
    """Assign the next sequence number of ``folder`` (atomic across processes in Redis).

    Without ``REDIS_URL`` the counter is in-process: correct for one process only.

    Raises:
        BackendUnavailable: Redis did not answer.
    """
    client = get_redis()
    if client is None:
        return _next_local_sequence(folder)
    try:
        async with command_deadline():
            return int(await client.incr(key("folder_seq", folder)))
    except (redis.exceptions.RedisError, TimeoutError) as exc:
        raise BackendUnavailable("folder sequence unavailable") from exc


async def current_sequence(folder: str) -> int:
    """Return the last sequence number issued for ``folder`` (0 before the first event).

    Raises:
        BackendUnavailable: Redis did not answer.
    """
    client = get_redis()
    if client is None:
        with _local_lock:
            return _local_sequences.get(folder, 0)
    try:
        async with command_deadline():
            value = await client.get(key("folder_seq", folder))
    except (redis.exceptions.RedisError, TimeoutError) as exc:
        raise BackendUnavailable("folder sequence unavailable") from exc
    return int(value) if value is not None else 0


# ---------------------------------------------------------------------- drop monitor

#: The message channels-redis logs when ``group_send`` skips full channels.
_OVER_CAPACITY_MESSAGE = "%s of %s channels over capacity in group %s"


@dataclass
class _PublishContext:
    folder: str
    seq: int
    origin: ConnectionInfo | None


_publishing: contextvars.ContextVar[_PublishContext | None] = contextvars.ContextVar(
    "secure_ws_publishing", default=None
)


@dataclass
class DropCounter:
    """How many group deliveries channels-redis dropped to full channels, per group."""

    total: int = 0
    by_group: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, group: str, dropped: int) -> None:
        """Count ``dropped`` deliveries to ``group``."""
        with self.lock:
            self.total += dropped
            self.by_group[group] = self.by_group.get(group, 0) + dropped


#: The process's drop counter (read it in metrics or tests).
dropped_deliveries = DropCounter()


class OverCapacityMonitor(logging.Filter):
    """Catches channels-redis' INFO "over capacity" record and makes it impossible to miss.

    It counts the drop in :data:`dropped_deliveries`, logs a WARNING naming the group (and
    the folder and ``seq`` when the drop happened while publishing a file event) and
    writes an audit security event. The original INFO record is swallowed.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg != _OVER_CAPACITY_MESSAGE or not isinstance(record.args, tuple):
            return True
        try:
            dropped, total = int(str(record.args[0])), int(str(record.args[1]))
            group = str(record.args[2])
        except (IndexError, ValueError):
            return True
        dropped_deliveries.add(group, dropped)
        context = _publishing.get()
        detail = f"{dropped} of {total} channels over capacity in group {group}"
        if context is not None:
            detail += f" (folder {context.folder} seq {context.seq})"
        logger.warning("event dropped for full channels: %s", detail)
        info = context.origin if context is not None and context.origin else None
        if info is None:
            info = ConnectionInfo(path=group)
        try:
            get_audit_sink().security_event(info, "group_over_capacity", detail)
        except Exception:
            logger.exception("audit sink failed while recording a dropped event")
        return False


_monitor = OverCapacityMonitor()
_monitor_lock = threading.Lock()


def install_drop_monitor() -> None:
    """Attach :class:`OverCapacityMonitor` to channels-redis' logger (idempotent).

    Called by every publish and every accepted connection, so that a dropped revocation
    (``kick_user``) is as visible as a dropped file event.
    """
    channels_logger = logging.getLogger("channels_redis.core")
    if _monitor in channels_logger.filters and channels_logger.isEnabledFor(logging.INFO):
        return
    with _monitor_lock:
        if _monitor not in channels_logger.filters:
            channels_logger.addFilter(_monitor)
        if not channels_logger.isEnabledFor(logging.INFO):
            # The record is only created at INFO; the filter swallows it after counting.
            channels_logger.setLevel(logging.INFO)


# ---------------------------------------------------------------------- publishing


@dataclass(frozen=True)
class PublishedEvent:
    """What was sent: the client-facing type, the folder, its ``seq`` and the payload."""

    type: str
    folder: str
    seq: int
    payload: dict[str, Any]


def _prepare(folder: str, event: FileEvent) -> tuple[str, str, Any]:
    try:
        folder = _folder_id.validate_python(folder, strict=True)
    except ValidationError:
        raise ValueError("invalid folder id") from None
    layer: Any = get_channel_layer()
    if layer is None:
        raise BackendUnavailable("no channel layer configured")
    install_drop_monitor()
    return folder, CLIENT_EVENT_TYPES[type(event)], layer


async def _send(
    layer: Any,
    folder: str,
    seq: int,
    event: FileEvent,
    sender: Sender | None,
    origin: ConnectionInfo | None,
) -> PublishedEvent:
    event_type = CLIENT_EVENT_TYPES[type(event)]
    payload = FileEventPayload(
        folder=folder,
        seq=seq,
        sender=sender,
        timestamp=time.time(),
        **event.model_dump(),
    ).model_dump(mode="json", exclude_none=True)
    token = _publishing.set(_PublishContext(folder, seq, origin))
    try:
        await layer.group_send(
            folder_group(folder),
            {"type": FILE_EVENT_LAYER_TYPE, "event": event_type, "payload": payload},
        )
    except redis.exceptions.RedisError as exc:
        raise BackendUnavailable("channel layer unavailable") from exc
    finally:
        _publishing.reset(token)
    return PublishedEvent(type=event_type, folder=folder, seq=seq, payload=payload)


async def apublish_file_event(
    folder: str,
    event: FileEvent,
    *,
    sender: Sender | None = None,
    origin: ConnectionInfo | None = None,
) -> PublishedEvent:
    """Send ``event`` to every subscriber of ``folder``, on every process.

    Args:
        folder: The folder id (validated as the wire protocol validates it).
        event: A :class:`~secure_ws.contrib.files.schemas.FileUploaded` or ``FileDeleted``.
        sender: Who caused it, from the server's own knowledge of the user.
        origin: The connection that caused it, if any (for the audit of dropped events).

    Raises:
        ValueError: ``folder`` is not a valid folder id.
        BackendUnavailable: Redis or the channel layer is not reachable.
    """
    folder, _, layer = _prepare(folder, event)
    seq = await next_sequence(folder)
    return await _send(layer, folder, seq, event, sender, origin)


def next_sequence_sync(folder: str) -> int:
    """:func:`next_sequence` for sync code, on the process's synchronous Redis client.

    Raises:
        BackendUnavailable: Redis did not answer.
    """
    client = get_sync_redis()
    if client is None:
        return _next_local_sequence(folder)
    try:
        return int(str(client.incr(key("folder_seq", folder))))
    except (redis.exceptions.RedisError, TimeoutError) as exc:
        raise BackendUnavailable("folder sequence unavailable") from exc


def publish_file_event(
    folder: str, event: FileEvent, *, sender: Sender | None = None
) -> PublishedEvent:
    """Synchronous :func:`apublish_file_event` for views, signal receivers and tasks.

    The sequence number comes from the synchronous Redis client, so a caller without an
    event loop (a Celery task) does not open a fresh async Redis client per event. Do not
    call it from a running event loop; await :func:`apublish_file_event` there.

    Raises:
        ValueError: ``folder`` is not a valid folder id.
        BackendUnavailable: Redis or the channel layer is not reachable.
    """
    folder, _, layer = _prepare(folder, event)
    seq = next_sequence_sync(folder)
    return async_to_sync(_send)(layer, folder, seq, event, sender, None)
