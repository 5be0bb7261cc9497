#!/usr/bin/env python
"""Django's command-line utility for the secure_ws demo project."""

import os
import sys


def main() -> None:
    if sys.argv[1:2] == ["ws_probe"]:
        # The probe is a black-box client of a URL: it needs no settings, SECRET_KEY,
        # database or channel layer, so it runs before the settings load (and never
        # prints their warnings).
        from secure_ws.probe.cli import main as probe

        sys.exit(probe(sys.argv[2:], prog="manage.py ws_probe"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
