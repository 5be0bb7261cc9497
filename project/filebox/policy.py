"""Who may read and write a folder in the demo: the ``Membership`` rows of ``filebox``."""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async

from project.filebox.models import Membership, StoredFile
from secure_ws.contrib.files.schemas import FolderFile


def membership_access(user: Any, folder: str) -> str | None:
    """Return ``user``'s access to ``folder`` (``"read"``/``"write"``), or ``None``."""
    if user is None or not user.is_authenticated or not user.is_active:
        return None
    access: str | None = (
        Membership.objects.filter(user=user, folder__slug=folder)
        .values_list("access", flat=True)
        .first()
    )
    return access


def folder_files(folder: str) -> list[FolderFile]:
    """Return the files stored in ``folder``, newest first (ties by id: pages are stable)."""
    rows = (
        StoredFile.objects.filter(folder__slug=folder)
        .order_by("-created_at", "id")
        .values_list("id", "name", "size", "content_type", "sha256")
    )
    return [
        FolderFile(file_id=row[0], name=row[1], size=row[2], content_type=row[3], sha256=row[4])
        for row in rows
    ]


class MembershipFolderPolicy:
    """Read for ``read`` and ``write`` members, write for ``write`` members; nobody else."""

    async def can_read(self, user: Any, folder: str) -> bool:
        access = await database_sync_to_async(membership_access)(user, folder)
        return access in {Membership.READ, Membership.WRITE}

    async def can_write(self, user: Any, folder: str) -> bool:
        access = await database_sync_to_async(membership_access)(user, folder)
        return access == Membership.WRITE

    async def list_files(self, user: Any, folder: str) -> list[FolderFile]:
        files: list[FolderFile] = await database_sync_to_async(folder_files)(folder)
        return files
