"""Group fan-out drop accounting: channels-redis' silent "over capacity" skips, made visible.

channels-redis skips a group member whose channel is full and logs it at INFO only.
:class:`OverCapacityMonitor` turns each such record into a count in
:data:`dropped_deliveries`, a WARNING and an audit security event. Every accepted connection
and every publisher installs it (:func:`install_drop_monitor`), so a dropped revocation is as
visible as a dropped file event; a publisher names what it was sending with
:func:`publishing`, so the WARNING and the audit detail say which message was lost.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from secure_ws.audit.sink import get_audit_sink
from secure_ws.connection import ConnectionInfo

__all__ = [
    "DropCounter",
    "OverCapacityMonitor",
    "dropped_deliveries",
    "install_drop_monitor",
    "publishing",
]

logger = logging.getLogger("secure_ws.fanout")

#: The message channels-redis logs when ``group_send`` skips full channels.
_OVER_CAPACITY_MESSAGE = "%s of %s channels over capacity in group %s"


@dataclass
class _PublishContext:
    what: str
    origin: ConnectionInfo | None


_publishing: contextvars.ContextVar[_PublishContext | None] = contextvars.ContextVar(
    "secure_ws_publishing", default=None
)


@contextmanager
def publishing(what: str, origin: ConnectionInfo | None = None) -> Iterator[None]:
    """Name the message a ``group_send`` inside this block carries (for a drop's report).

    Args:
        what: A short, secret-free description (``"folder team seq 12"``).
        origin: The connection that caused the send, if any (the audit event goes on it).
    """
    token = _publishing.set(_PublishContext(what, origin))
    try:
        yield
    finally:
        _publishing.reset(token)


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
    what was being published, see :func:`publishing`) and writes an audit security event.
    The original INFO record is swallowed.
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
            detail += f" ({context.what})"
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
