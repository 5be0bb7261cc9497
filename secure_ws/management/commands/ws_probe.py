"""``manage.py ws_probe URL``: the black-box WebSocket security scanner, from Django.

The same options and output as the ``secure-ws-probe`` console script; the command exits
with status 1 when any check fails, so CI can gate on it.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from secure_ws.probe.cli import add_arguments, execute


class Command(BaseCommand):
    help = (
        "Probe a WebSocket endpoint for common security weaknesses (OWASP WebSocket cheat "
        "sheet): authentication, origin checks, limits, validation. Exit 1 if any check fails."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        add_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        namespace = argparse.Namespace(**options)
        status = execute(namespace, self.stdout, self.stderr)  # type: ignore[arg-type]
        if status:
            sys.exit(status)
