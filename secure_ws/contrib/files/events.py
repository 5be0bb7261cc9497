"""Publish file events to a folder's WebSocket subscribers from server-side code.

Use :func:`apublish_file_event` from async code (consumers, async views) and
:func:`publish_file_event` from sync code (views, signal receivers, Celery tasks)::

    publish_file_event("team", FileUploaded(file_id=..., name="q3.pdf", size=1024,
                       content_type="application/pdf", sha256="..."), sender=Sender(...))

Each event gets a per-folder sequence number from one atomic Redis ``INCR`` (shared by
every process), so a client that sees a gap knows it missed an event and asks for
``resync``. channels-redis silently skips a group member whose channel is full (logged at
INFO only): :mod:`secure_ws.consumer.fanout` turns those records into a WARNING, a counter
and an audit record, so that no drop goes unnoticed.

The channel-layer event type is fixed here (:data:`FILE_EVENT_LAYER_TYPE`); client data
only ever travels inside the payload, so no client can pick which consumer method runs.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import redis.exceptions
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from pydantic import TypeAdapter, ValidationError

from secure_ws.connection import ConnectionInfo
from secure_ws.consumer.fanout import install_drop_monitor, publishing
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
    try:
        with publishing(f"folder {folder} seq {seq}", origin):
            await layer.group_send(
                folder_group(folder),
                {"type": FILE_EVENT_LAYER_TYPE, "event": event_type, "payload": payload},
            )
    except redis.exceptions.RedisError as exc:
        raise BackendUnavailable("channel layer unavailable") from exc
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
