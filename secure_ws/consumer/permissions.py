"""Per-message permission classes, shaped like Django REST framework's.

A message type declares its permissions with
:func:`~secure_ws.consumer.messages.message_handler`; the consumer asks each in turn before the
handler runs and answers ``forbidden`` when one says no. ``has_permission`` may be a plain
method or a coroutine, so a permission that needs the database stays async-safe (do the
query through ``database_sync_to_async``).
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from secure_ws.consumer.messages import ClientMessage


class BasePermission:
    """Allows everything; subclass it and override :meth:`has_permission`."""

    def has_permission(self, consumer: Any, message: ClientMessage[Any]) -> bool | Awaitable[bool]:
        """Return (or resolve to) ``True`` when ``consumer``'s user may send ``message``."""
        return True


class AllowAny(BasePermission):
    """Allows any connection, authenticated or not."""


class IsAuthenticated(BasePermission):
    """Allows only connections whose user is authenticated."""

    def has_permission(self, consumer: Any, message: ClientMessage[Any]) -> bool:
        user = consumer.scope.get("user")
        return bool(user is not None and user.is_authenticated)


class IsAdminUser(BasePermission):
    """Allows only staff users."""

    def has_permission(self, consumer: Any, message: ClientMessage[Any]) -> bool:
        user = consumer.scope.get("user")
        return bool(user is not None and user.is_authenticated and user.is_staff)
