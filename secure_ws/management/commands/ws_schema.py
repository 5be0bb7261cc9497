"""``manage.py ws_schema``: print the AsyncAPI 3.0 document of the WebSocket protocol."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.module_loading import import_string

from secure_ws.consumer.protocol import (
    build_asyncapi,
    dumps,
    endpoints_from_urlpatterns,
    render_markdown,
)


def default_routing() -> str:
    """``<package of ROOT_URLCONF>.routing.websocket_urlpatterns`` (the Channels convention)."""
    package = str(settings.ROOT_URLCONF).rsplit(".", 1)[0]
    return f"{package}.routing.websocket_urlpatterns"


class Command(BaseCommand):
    help = (
        "Print the AsyncAPI 3.0 document of the secure_ws consumers in the WebSocket routes "
        "(messages, payload JSON Schemas, error and close codes), or docs/protocol.md."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--routing",
            help="Dotted path of the websocket URL patterns (default: <project>.routing."
            "websocket_urlpatterns).",
        )
        parser.add_argument(
            "--markdown", action="store_true", help="Print docs/protocol.md instead of JSON."
        )

    def handle(self, *args: Any, routing: str | None, markdown: bool, **options: Any) -> None:
        path = routing or default_routing()
        try:
            patterns = import_string(path)
        except ImportError as exc:
            raise CommandError(f"cannot import the WebSocket routes {path!r}: {exc}") from exc
        endpoints = endpoints_from_urlpatterns(patterns)
        if not endpoints:
            raise CommandError(f"no secure_ws consumer in {path!r}")
        document = build_asyncapi(endpoints)
        self.stdout.write(render_markdown(document) if markdown else dumps(document), ending="")
