"""Optional extras: the core imports and runs its checks without them, and says what to install.

The core install is Django, channels, channels-redis, DRF, simplejwt, pydantic and redis;
daphne, django-csp, prometheus-client and the probe's websockets are extras. A subprocess
hides the extras behind a meta-path blocker (as if they were not installed) and imports
every core module, runs the system checks and the probe import.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

from django.conf import settings
from django.test import override_settings

from secure_ws.checks import extras as checks_extras

ROOT = Path(__file__).resolve().parent.parent

#: Top-level modules each extra provides.
EXTRA_MODULES = {
    "daphne": ["daphne", "twisted", "autobahn"],
    "csp": ["csp"],
    "metrics": ["prometheus_client"],
    "probe": ["websockets"],
}

SCRIPT = r"""
import importlib, json, pkgutil, sys

BLOCKED = set(sys.argv[1].split(","))


class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
        return None


sys.meta_path.insert(0, Blocker())
for name in list(sys.modules):
    if name.split(".")[0] in BLOCKED:
        del sys.modules[name]

import django
from django.conf import settings

settings.configure(
    DEBUG=False,
    SECRET_KEY="extras-test-" + "k" * 40,
    INSTALLED_APPS=[
        "django.contrib.contenttypes",
        "django.contrib.auth",
        "django.contrib.admin",
        "django.contrib.sessions",
        "django.contrib.messages",
        "channels",
        "rest_framework",
        "rest_framework_simplejwt.token_blacklist",
        "secure_ws",
    ],
    MIDDLEWARE=["csp.middleware.CSPMiddleware"],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
    SECURE_WS={"METRICS_ENABLED": True},
    ROOT_URLCONF=__name__,
)
urlpatterns = []
django.setup()

import secure_ws

imported, failed = [], {}
for module in pkgutil.walk_packages(secure_ws.__path__, "secure_ws."):
    # The probe needs [probe]; secure_ws.testing builds on channels.testing, which imports
    # daphne (the [daphne] extra): both are test/CLI tools, not the core.
    if module.name.startswith(
        ("secure_ws.probe", "secure_ws.management.commands.ws_probe", "secure_ws.testing")
    ):
        continue
    try:
        importlib.import_module(module.name)
        imported.append(module.name)
    except Exception as exc:
        failed[module.name] = repr(exc)

from secure_ws.audit import metrics

metrics.observe_accepted(0.01)
metrics.observe_refused("origin_refused", 0.01)

from django.core.checks import run_checks

messages = {m.id: m.hint for m in run_checks() if m.id and m.id.startswith("secure_ws.E09")}
try:
    import secure_ws.probe
    probe = "imported"
except ImportError as exc:
    probe = str(exc)
print(json.dumps({"imported": imported, "failed": failed, "checks": messages, "probe": probe}))
"""


def run_without(modules: list[str]) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, "-c", SCRIPT, ",".join(modules)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )
    assert completed.returncode == 0, completed.stderr
    return dict(json.loads(completed.stdout.strip().splitlines()[-1]))


def test_the_core_imports_and_names_each_missing_extra() -> None:
    blocked = [module for modules in EXTRA_MODULES.values() for module in modules]
    result = run_without(blocked)
    assert result["failed"] == {}
    assert "secure_ws.gate.stack" in result["imported"]
    assert "secure_ws.consumer.secure" in result["imported"]
    assert "django-secure-ws[metrics]" in result["checks"]["secure_ws.E091"]
    assert "django-secure-ws[csp]" in result["checks"]["secure_ws.E092"]
    assert "django-secure-ws[probe]" in result["probe"]


def test_with_the_extras_installed_no_extra_check_fires() -> None:
    result = run_without(["nothing-blocked"])
    assert result["failed"] == {}
    assert result["checks"] == {}
    assert result["probe"] == "imported"


def test_pyproject_declares_the_extras_and_a_lean_core() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {re.split(r"[<>=\[ ]", dep)[0] for dep in project["dependencies"]}
    assert core == {
        "Django",
        "channels",
        "channels-redis",
        "djangorestframework",
        "djangorestframework-simplejwt",
        "pydantic",
        "redis",
    }
    extras = project["optional-dependencies"]
    assert set(extras) >= {"daphne", "csp", "metrics", "probe", "all"}
    everything = {dep for name in ("daphne", "csp", "metrics", "probe") for dep in extras[name]}
    assert set(extras["all"]) == everything
    for path in (ROOT / "requirements").glob("*.txt"):
        assert "-e .[all]" in requirement_lines(path), path


def requirement_lines(path: Path) -> list[str]:
    """The lines of a requirements file with its ``-r`` includes expanded."""
    lines: list[str] = []
    for line in path.read_text().splitlines():
        if line.startswith("-r "):
            lines += requirement_lines(path.parent / line[3:].strip())
        else:
            lines.append(line.strip())
    return lines


def test_refusal_mode_close_is_a_development_mode() -> None:
    close = {**settings.SECURE_WS, "REFUSAL_MODE": "close"}
    with override_settings(SECURE_WS=close, DEBUG=False):
        assert [m.id for m in checks_extras.check_refusal_mode(None)] == ["secure_ws.E090"]
    with override_settings(SECURE_WS=close, DEBUG=True):
        assert checks_extras.check_refusal_mode(None) == []
    default = {k: v for k, v in settings.SECURE_WS.items() if k != "REFUSAL_MODE"}
    with override_settings(SECURE_WS=default, DEBUG=False):
        assert checks_extras.check_refusal_mode(None) == []
