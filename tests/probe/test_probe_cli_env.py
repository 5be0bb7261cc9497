"""The probe as a user runs it: no Django settings, no SECRET_KEY, no Redis in the environment.

``secure-ws-probe`` is a black-box client and the demo's ``manage.py ws_probe`` hands over
to it before any settings load, so neither needs the target project's secrets, and
neither prints the settings' channel-layer warning.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

BIN = Path(sys.executable).parent

#: An environment with nothing of a Django project in it.
BARE_ENV = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"}

COMMANDS = {
    "console script": [str(BIN / "secure-ws-probe")],
    "module": [sys.executable, "-m", "secure_ws.probe.cli"],
    "manage.py": [sys.executable, "manage.py", "ws_probe"],
}


def run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=ROOT, env=BARE_ENV, capture_output=True, text=True, timeout=120, check=False
    )


def quiet(completed: subprocess.CompletedProcess[str]) -> None:
    output = completed.stdout + completed.stderr
    for noise in ("REDIS_URL", "channel layer", "Traceback", "SECRET_KEY"):
        assert noise not in output, output


@pytest.mark.parametrize("how", sorted(COMMANDS))
def test_help_works_without_any_settings(how: str) -> None:
    completed = run([*COMMANDS[how], "--help"])
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.startswith("usage: ")
    assert "--token-file" in completed.stdout
    quiet(completed)


def test_manage_py_probe_runs_without_any_settings() -> None:
    # Nothing listens on port 9: the baseline fails, quietly, with exit status 1.
    completed = run(
        [*COMMANDS["manage.py"], "ws://127.0.0.1:9/ws/", "--only", "baseline", "--quiet"]
    )
    assert completed.returncode == 1, completed.stderr
    assert "baseline.connect" in completed.stdout
    quiet(completed)
