"""Membership changes reach live WebSockets at once, through ``folder_access_changed``.

A removed membership, one moved to another user or folder, a deleted folder (its
memberships go with it) and a renamed folder each take read access away from someone;
after the change commits,
:func:`secure_ws.contrib.files.consumer.folder_access_changed` makes that user's subscribed
connections re-check it on every process. Bulk changes that send no signals
(``QuerySet.update()``, raw SQL) are caught later by the consumer's re-check on delivery
(``SUBSCRIPTION_RECHECK_INTERVAL``); call the hook yourself after them to be immediate.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.db.models.signals import post_delete, post_save, pre_delete, pre_save
from django.dispatch import receiver

from project.filebox.models import Folder, Membership
from secure_ws.contrib.files.consumer import folder_access_changed
from secure_ws.exceptions import BackendUnavailable

logger = logging.getLogger("project.filebox")


def notify_after_commit(user_id: int, folder: str) -> None:
    """Run :func:`folder_access_changed` once the current transaction commits."""

    def notify() -> None:
        try:
            folder_access_changed(user_id, folder)
        except (BackendUnavailable, ValueError):
            # The re-check on delivery still bounds the window.
            logger.exception("folder access change not announced: user_id=%s", user_id)

    transaction.on_commit(notify)


def _pair(membership: Membership) -> tuple[int, str]:
    return membership.user_id, membership.folder.slug


@receiver(pre_save, sender=Membership, dispatch_uid="filebox.membership_pre_save")
def remember_membership(sender: Any, instance: Membership, **kwargs: Any) -> None:
    """Remember whose access to which folder an edit may take away."""
    previous = None
    if instance.pk is not None and not instance._state.adding:
        previous = (
            Membership.objects.filter(pk=instance.pk).values_list("user_id", "folder__slug").first()
        )
    instance._access_before = previous  # type: ignore[attr-defined]


@receiver(post_save, sender=Membership, dispatch_uid="filebox.membership_post_save")
def membership_saved(sender: Any, instance: Membership, created: bool, **kwargs: Any) -> None:
    """An edited membership: its previous user and folder may have lost read access."""
    previous = getattr(instance, "_access_before", None)
    instance._access_before = None  # type: ignore[attr-defined]
    if created or previous is None:
        return
    notify_after_commit(*previous)
    if previous != _pair(instance):
        notify_after_commit(*_pair(instance))


@receiver(pre_delete, sender=Membership, dispatch_uid="filebox.membership_pre_delete")
def remember_deleted_membership(sender: Any, instance: Membership, **kwargs: Any) -> None:
    """Read the folder's slug while it still exists (a folder's deletion cascades here)."""
    instance._access_before = _pair(instance)  # type: ignore[attr-defined]


@receiver(post_delete, sender=Membership, dispatch_uid="filebox.membership_post_delete")
def membership_deleted(sender: Any, instance: Membership, **kwargs: Any) -> None:
    """A removed membership (alone, or with its folder or user): access is gone."""
    pair = getattr(instance, "_access_before", None)
    if pair is not None:
        notify_after_commit(*pair)


@receiver(pre_save, sender=Folder, dispatch_uid="filebox.folder_pre_save")
def remember_folder_slug(sender: Any, instance: Folder, **kwargs: Any) -> None:
    """Remember the slug before an edit: a new slug is a new folder id."""
    previous = None
    if instance.pk is not None and not instance._state.adding:
        previous = Folder.objects.filter(pk=instance.pk).values_list("slug", flat=True).first()
    instance._slug_before = previous  # type: ignore[attr-defined]


@receiver(post_save, sender=Folder, dispatch_uid="filebox.folder_post_save")
def folder_saved(sender: Any, instance: Folder, **kwargs: Any) -> None:
    """A renamed folder: its members' subscriptions to the old id lose read access."""
    old_slug = getattr(instance, "_slug_before", None)
    instance._slug_before = None  # type: ignore[attr-defined]
    if old_slug is None or old_slug == instance.slug:
        return
    members = Membership.objects.filter(folder_id=instance.pk).values_list("user_id", flat=True)
    for user_id in members:
        notify_after_commit(user_id, old_slug)
