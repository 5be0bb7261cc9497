"""AppConfig of the optional file-events sub-app (add ``"secure_ws.contrib.files"``)."""

from __future__ import annotations

from django.apps import AppConfig


class FileEventsConfig(AppConfig):
    """``secure_ws.contrib.files``: ``FileEventConsumer`` and ``publish_file_event``.

    Like DRF's ``authtoken``, it is listed in ``INSTALLED_APPS`` only by projects that use
    it; the core (gate, consumer, sessions, audit) never imports it.
    """

    name = "secure_ws.contrib.files"
    label = "secure_ws_files"
    verbose_name = "Secure WebSockets: file events"
