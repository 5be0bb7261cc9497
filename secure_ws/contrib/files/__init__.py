"""File events, an optional sub-app: add ``"secure_ws.contrib.files"`` to ``INSTALLED_APPS``.

- :mod:`secure_ws.contrib.files.consumer` — ``FileEventConsumer`` and ``folder_access_changed``;
- :mod:`secure_ws.contrib.files.events` — ``publish_file_event`` / ``apublish_file_event``,
  per-folder sequence numbers;
- :mod:`secure_ws.contrib.files.schemas` — the file-event payloads.

The names below are imported on first use (this package is imported by Django's app
loading, before the models those modules need are ready)::

    from secure_ws.contrib.files import FileEventConsumer, publish_file_event
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["FileEventConsumer", "apublish_file_event", "publish_file_event"]

if TYPE_CHECKING:
    from secure_ws.contrib.files.consumer import FileEventConsumer
    from secure_ws.contrib.files.events import apublish_file_event, publish_file_event


def __getattr__(name: str) -> Any:
    # Imported here, not at the top: Django imports this package while it loads apps,
    # before the consumer's models and settings can be imported (PEP 562 lazy attributes).
    if name == "FileEventConsumer":
        from secure_ws.contrib.files.consumer import FileEventConsumer

        return FileEventConsumer
    if name in ("publish_file_event", "apublish_file_event"):
        from secure_ws.contrib.files import events

        return getattr(events, name)
    raise AttributeError(f"module 'secure_ws.contrib.files' has no attribute {name!r}")
