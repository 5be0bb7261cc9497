"""``pytest -m unit`` runs without PostgreSQL and Redis; any other selection needs them.

Each case runs pytest in a subprocess whose settings point PostgreSQL and Redis at closed
loopback ports, which is what a machine without the services looks like to the suite.
"""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT, free_port

#: A pure module and a module whose tests talk to Redis.
UNIT_MODULE = "tests/test_logsafe.py"
SERVICE_MODULE = "tests/gate/test_state.py"


def run_without_services(*args: str) -> subprocess.CompletedProcess[str]:
    closed = free_port()  # bound then released: nothing listens there
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:{closed}/secure_ws",
        "REDIS_URL": f"redis://127.0.0.1:{closed}/0",
    }
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def test_the_unit_subset_passes_without_postgresql_and_redis() -> None:
    result = run_without_services("-m", "unit", UNIT_MODULE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout
    assert "not reachable" not in result.stdout + result.stderr


def test_a_selection_that_needs_the_services_fails_when_they_are_missing() -> None:
    result = run_without_services(UNIT_MODULE, SERVICE_MODULE)
    output = result.stdout + result.stderr
    assert result.returncode == 3, output
    assert "required services are not reachable: PostgreSQL" in output
    assert "Redis" in output
    assert " passed" not in output
