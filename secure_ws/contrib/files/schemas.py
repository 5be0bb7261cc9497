"""Payload schemas of the file-events protocol (DESIGN.md, "Wire protocol").

Everything a client sends about a file is a reference, validated strictly:

- a folder id is safe to embed in a channel-layer group name (ASCII letters, digits, ``-``
  and ``_``, at most 64 characters);
- a file name is a display name, never a path: no separators, no ``.``/``..``, no NUL,
  control, line-separator or bidi-override characters, at most 255 bytes of UTF-8;
- a size is a non-negative int up to ``MAX_FILE_SIZE``;
- a content type comes from ``ALLOWED_CONTENT_TYPES``;
- a ``sha256`` is 64 lowercase hex characters; a file id is a UUID.

Limits from settings are read when a value is validated, never at import.
"""

from __future__ import annotations

import unicodedata
import uuid
from typing import Annotated

from pydantic import AfterValidator, Field, StringConstraints

from secure_ws.conf import get_settings
from secure_ws.consumer.messages import Schema

#: Longest file name in bytes of UTF-8 (the usual file-system limit).
MAX_FILE_NAME_BYTES = 255

#: Characters that reorder text on screen: ``invoice\u202egpj.exe`` shows as ``invoiceexe.jpg``.
BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)

FolderId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$"),
    Field(description="Folder id: ASCII letters, digits, - and _ (safe in group names)."),
]


def check_file_name(name: str) -> str:
    """Return ``name`` if it is a safe display name; raise ``ValueError`` otherwise.

    The messages name the rule, never the offending input.
    """
    if name in {"", ".", ".."}:
        raise ValueError("name must be a display name, not empty, '.' or '..'")
    if "/" in name or "\\" in name:
        raise ValueError("name must not contain path separators")
    for char in name:
        if char in BIDI_CONTROLS:
            raise ValueError("name must not contain bidi control characters")
        if unicodedata.category(char) in {"Cc", "Cs", "Zl", "Zp"}:
            raise ValueError("name must not contain control characters")
    if len(name.encode("utf-8")) > MAX_FILE_NAME_BYTES:
        raise ValueError(f"name must be at most {MAX_FILE_NAME_BYTES} bytes of UTF-8")
    return name


def check_file_size(size: int) -> int:
    """Return ``size`` if it does not exceed ``MAX_FILE_SIZE``."""
    if size > get_settings().MAX_FILE_SIZE:
        raise ValueError("size exceeds MAX_FILE_SIZE")
    return size


def check_content_type(content_type: str) -> str:
    """Return ``content_type`` if ``ALLOWED_CONTENT_TYPES`` lists it."""
    if content_type not in get_settings().ALLOWED_CONTENT_TYPES:
        raise ValueError("content type is not allowed")
    return content_type


FileName = Annotated[
    str,
    StringConstraints(max_length=MAX_FILE_NAME_BYTES),
    AfterValidator(check_file_name),
    Field(
        description="Display name, not a path: no / or \\, not . or .., no NUL, control or "
        "bidi characters, at most 255 bytes of UTF-8."
    ),
]
FileSize = Annotated[
    int,
    Field(ge=0, description="Bytes, at most the MAX_FILE_SIZE setting."),
    AfterValidator(check_file_size),
]
ContentType = Annotated[
    str,
    StringConstraints(max_length=127),
    AfterValidator(check_content_type),
    Field(description="One of the ALLOWED_CONTENT_TYPES setting."),
]
Sha256 = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9a-f]{64}$"),
    Field(description="SHA-256 of the content, 64 lowercase hex characters."),
]


class FolderPayload(Schema):
    """``subscribe`` and ``unsubscribe``: one folder."""

    folder: FolderId


#: Largest ``offset`` a ``resync`` may ask for (far beyond any real folder).
MAX_RESYNC_OFFSET = 10**6


class ResyncPayload(Schema):
    """``resync``: one page of a folder's files, from ``offset`` (0: the first page)."""

    folder: FolderId
    offset: Annotated[
        int,
        Field(
            ge=0,
            le=MAX_RESYNC_OFFSET,
            description="Index of the first file of the page: 0, or a next_offset.",
        ),
    ] = 0


class FileUploadPayload(Schema):
    """``file_upload``: a file that was stored, announced to the folder's subscribers."""

    folder: FolderId
    file_id: uuid.UUID
    name: FileName
    size: FileSize
    content_type: ContentType
    sha256: Sha256


class FileDeletePayload(Schema):
    """``file_delete``: a file that was removed (``name``: its display name, if known)."""

    folder: FolderId
    file_id: uuid.UUID
    name: FileName | None = None


class FileUploaded(Schema):
    """The facts of an uploaded file that a ``file.uploaded`` event carries."""

    file_id: uuid.UUID
    name: FileName
    size: FileSize
    content_type: ContentType
    sha256: Sha256


class FileDeleted(Schema):
    """The facts of a deleted file that a ``file.deleted`` event carries.

    ``name`` lets a client say which file went without a listing of its own (a client
    that never saw the upload, or whose list was already refreshed).
    """

    file_id: uuid.UUID
    name: FileName | None = None


FileEvent = FileUploaded | FileDeleted


class Sender(Schema):
    """Who caused an event, set by the server from the authenticated connection or request."""

    user_id: int | str | None
    username: str


class FileEventPayload(Schema):
    """Payload of ``file.uploaded`` / ``file.deleted`` as clients receive it.

    ``seq`` increases by one per event of the folder, across processes: a client that
    sees a gap asks for ``resync``. ``sender`` and ``timestamp`` come from the server.
    """

    folder: FolderId
    seq: int
    file_id: uuid.UUID
    name: str | None = None
    size: int | None = None
    content_type: str | None = None
    sha256: str | None = None
    sender: Sender | None
    timestamp: float


class FolderFile(Schema):
    """One file of a folder listing (``folder.state``)."""

    file_id: uuid.UUID
    name: str
    size: int
    content_type: str
    sha256: str


class FolderStatePayload(Schema):
    """Answer to ``resync``: one page of the folder's files and the ``seq`` before them.

    A page holds at most the consumer's ``folder_state_page_size`` files (100 by default,
    so a reply stays far below ``MAX_PENDING_OUTPUT``). ``next_offset`` is present when the
    listing was cut: ask ``resync`` again with ``offset`` set to it. If ``seq`` differs
    between pages the folder changed meanwhile: start again at offset 0.
    """

    folder: FolderId
    seq: int
    files: list[FolderFile]
    offset: int = 0
    next_offset: Annotated[
        int | None, Field(description="Absent on the last page; else the next page's offset.")
    ] = None


class SubscribedPayload(Schema):
    """``ack`` of ``subscribe``: the folder and its current ``seq``."""

    folder: FolderId
    seq: int


class FolderRevokedPayload(Schema):
    """The user lost read access to ``folder``: no more of its events reach this connection."""

    folder: FolderId
