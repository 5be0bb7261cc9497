"""Folders with members, and the files stored in them."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class Folder(models.Model):
    """A shared folder; its ``slug`` is the folder id used on the wire."""

    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)

    def __str__(self) -> str:
        return self.slug


class Membership(models.Model):
    """A user's access to a folder: read, or read and write."""

    READ = "read"
    WRITE = "write"
    ACCESS_CHOICES = [(READ, "Read"), (WRITE, "Read and write")]

    folder = models.ForeignKey(Folder, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    access = models.CharField(max_length=5, choices=ACCESS_CHOICES, default=READ)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["folder", "user"], name="filebox_unique_membership")
        ]

    def __str__(self) -> str:
        return f"{self.user} {self.access} {self.folder}"


def stored_file_path(instance: StoredFile, filename: str) -> str:
    # The client's file name never becomes a path: files are stored under their uuid.
    return f"filebox/{instance.folder.slug}/{instance.id}"


class StoredFile(models.Model):
    """A file uploaded into a folder. ``name`` is a display name, never a path."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    folder = models.ForeignKey(Folder, on_delete=models.CASCADE, related_name="files")
    name = models.CharField(max_length=255)
    size = models.BigIntegerField()
    content_type = models.CharField(max_length=100)
    sha256 = models.CharField(max_length=64)
    file = models.FileField(upload_to=stored_file_path)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name
