"""The core works without the optional ``secure_ws.contrib.files`` sub-app.

A subprocess starts Django with :mod:`tests.minimal_settings` (no file-events app, no demo
apps), imports the gate, the consumer, sessions and audit, runs the system checks and
reports which ``secure_ws.contrib`` modules got imported along the way: none may be.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
import json, sys
import django
django.setup()
import secure_ws
import secure_ws.consumer.secure
import secure_ws.gate.stack
import secure_ws.gate.tickets
import secure_ws.sessions.revocation
import secure_ws.audit.writer
import secure_ws.api.authentication
import secure_ws.checks
from django.core.management import call_command
call_command("check", "secure_ws", fail_level="ERROR")
secure_ws.SecureJsonWebsocketConsumer
print(json.dumps(sorted(name for name in sys.modules if name.startswith("secure_ws.contrib"))))
"""


def test_core_imports_and_checks_without_contrib_files() -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.minimal_settings"}
    env.pop("REDIS_URL", None)
    result = subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning:secure_ws", "-c", SCRIPT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded == []


def test_public_names_resolve_to_their_modules() -> None:
    import secure_ws
    from secure_ws.consumer.messages import message_handler
    from secure_ws.consumer.secure import SecureJsonWebsocketConsumer
    from secure_ws.contrib import files
    from secure_ws.contrib.files.consumer import FileEventConsumer
    from secure_ws.contrib.files.events import publish_file_event
    from secure_ws.gate.stack import secure_websocket

    assert secure_ws.SecureJsonWebsocketConsumer is SecureJsonWebsocketConsumer
    assert secure_ws.message_handler is message_handler
    assert secure_ws.secure_websocket is secure_websocket
    assert files.FileEventConsumer is FileEventConsumer
    assert files.publish_file_event is publish_file_event
    assert not hasattr(secure_ws, "FileEventConsumer")
