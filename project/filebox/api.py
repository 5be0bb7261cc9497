"""HTTP API of the demo's folders: list, upload and delete real files.

Each write stores or removes the file first, then announces it to the folder's WebSocket
subscribers through :func:`secure_ws.contrib.files.events.publish_file_event`. The client's
file name is a display name only (validated like the WebSocket protocol's); files are stored under
their uuid.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from django.db import transaction
from rest_framework import status
from rest_framework.parsers import MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from project.filebox.models import Folder, Membership, StoredFile
from project.filebox.policy import folder_files, membership_access
from secure_ws.contrib.files.events import publish_file_event
from secure_ws.contrib.files.schemas import (
    FileDeleted,
    FileUploaded,
    Sender,
    check_content_type,
    check_file_name,
    check_file_size,
)
from secure_ws.exceptions import BackendUnavailable

logger = logging.getLogger("project.filebox")


def _sender(request: Request) -> Sender:
    return Sender(user_id=request.user.pk, username=request.user.get_username())


def _publish(folder: str, event: FileUploaded | FileDeleted, request: Request) -> int | None:
    # The file operation already happened; a lost announcement is logged and subscribers
    # catch up with ``resync`` (the seq gap, or their next reconnect, tells them to).
    try:
        return publish_file_event(folder, event, sender=_sender(request)).seq
    except (BackendUnavailable, ValueError):
        logger.exception("could not publish %s for folder %s", type(event).__name__, folder)
        return None


def _refusal(access: str | None, needed: str) -> Response | None:
    if access is None:
        return Response({"detail": "Not found."}, status=status.HTTP_404_NOT_FOUND)
    if needed == Membership.WRITE and access != Membership.WRITE:
        return Response({"detail": "Write access required."}, status=status.HTTP_403_FORBIDDEN)
    return None


class FolderListView(APIView):
    """``GET /api/folders/``: the folders the user belongs to, with the access they have."""

    permission_classes = [IsAuthenticated]

    def get(self, request: Request) -> Response:
        memberships = Membership.objects.filter(user=request.user).select_related("folder")
        folders = [
            {"folder": m.folder.slug, "name": m.folder.name, "access": m.access}
            for m in memberships.order_by("folder__slug")
        ]
        return Response(folders)


class FolderFilesView(APIView):
    """``GET`` lists a folder's files (for ``resync``); ``POST`` uploads one (field ``file``)."""

    permission_classes = [IsAuthenticated]
    parser_classes = [MultiPartParser]

    def get(self, request: Request, folder: str) -> Response:
        refusal = _refusal(membership_access(request.user, folder), Membership.READ)
        if refusal is not None:
            return refusal
        files = [f.model_dump(mode="json") for f in folder_files(folder)]
        return Response({"folder": folder, "files": files})

    def post(self, request: Request, folder: str) -> Response:
        refusal = _refusal(membership_access(request.user, folder), Membership.WRITE)
        if refusal is not None:
            return refusal
        upload: Any = request.FILES.get("file")
        if upload is None:
            return Response({"file": ["This field is required."]}, status=400)
        content_type = (upload.content_type or "application/octet-stream").split(";")[0].strip()
        try:
            name = check_file_name(str(upload.name))
            size = check_file_size(int(upload.size))
            content_type = check_content_type(content_type.lower())
        except ValueError as exc:
            return Response({"file": [str(exc)]}, status=status.HTTP_400_BAD_REQUEST)
        digest = hashlib.sha256()
        for chunk in upload.chunks():
            digest.update(chunk)
        upload.seek(0)
        with transaction.atomic():
            stored = StoredFile(
                folder=Folder.objects.get(slug=folder),
                name=name,
                size=size,
                content_type=content_type,
                sha256=digest.hexdigest(),
                uploaded_by=request.user,
            )
            stored.file.save(str(stored.id), upload, save=False)
            stored.save()
        event = FileUploaded(
            file_id=stored.id,
            name=name,
            size=size,
            content_type=content_type,
            sha256=stored.sha256,
        )
        seq = _publish(folder, event, request)
        body = {**event.model_dump(mode="json"), "folder": folder, "seq": seq}
        return Response(body, status=status.HTTP_201_CREATED)


class FolderFileView(APIView):
    """``DELETE /api/folders/<folder>/files/<file_id>/``: remove a stored file."""

    permission_classes = [IsAuthenticated]

    def delete(self, request: Request, folder: str, file_id: Any) -> Response:
        refusal = _refusal(membership_access(request.user, folder), Membership.WRITE)
        if refusal is not None:
            return refusal
        stored = StoredFile.objects.filter(folder__slug=folder, id=file_id).first()
        if stored is None:
            return Response({"detail": "Not found."}, status=status.HTTP_404_NOT_FOUND)
        name = stored.name
        stored.file.delete(save=False)
        stored.delete()
        _publish(folder, FileDeleted(file_id=file_id, name=name), request)
        return Response(status=status.HTTP_204_NO_CONTENT)
