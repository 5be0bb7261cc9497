"""Packaging proof: the built wheel works in a brand-new project set up by the quickstart.

Builds the sdist and wheel from a copy of the source tree, installs the wheel into a fresh
virtualenv, runs ``django-admin startproject``, applies docs/quickstart.md's blocks
verbatim (the README's quickstart is copied from that page), migrates, runs
``check --deploy`` and completes an authenticated WebSocket connection through daphne, with
nginx's TLS termination played by the ``X-Forwarded-*`` headers from a trusted peer.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "docs" / "quickstart.md"
_BLOCK = re.compile(
    r"<!-- quickstart: (?P<mode>append|write) (?P<path>\S+) -->\s*```python\n(?P<code>.*?)```",
    re.DOTALL,
)
_COPY_IGNORE = shutil.ignore_patterns(
    ".git",
    ".venv*",
    "__pycache__",
    "*.pyc",
    ".mypy_cache",
    ".ruff_cache",
    ".hypothesis",
    "build",
    "dist",
    "*.egg-info",
    "artifacts",
    "media",
    "staticfiles",
    "*.sqlite3",
    "node_modules",
)
ORIGIN = "https://app.example.com"
PASSWORD = "quickstart-" + "p" * 12


@dataclass(frozen=True)
class Snippet:
    mode: str
    path: str
    code: str


def quickstart_snippets() -> list[Snippet]:
    return [
        Snippet(m["mode"], m["path"], m["code"])
        for m in _BLOCK.finditer(QUICKSTART.read_text(encoding="utf-8"))
    ]


def test_quickstart_has_every_step() -> None:
    targets = {(s.mode, s.path) for s in quickstart_snippets()}
    assert targets == {
        ("append", "mysite/settings.py"),
        ("write", "mysite/consumers.py"),
        ("write", "mysite/asgi.py"),
        ("append", "mysite/urls.py"),
    }


def run(command: list[str], cwd: Path, env: dict[str, str], timeout: int = 300) -> str:
    result = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Build sdist + wheel from a copy of the tree (the real tree is never written to)."""
    work = tmp_path_factory.mktemp("packaging")
    source = work / "source"
    shutil.copytree(ROOT, source, ignore=_COPY_IGNORE)
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    run([sys.executable, "-m", "build", "--outdir", str(work / "dist"), str(source)], work, env)
    (wheel,) = (work / "dist").glob("*.whl")
    (sdist,) = (work / "dist").glob("*.tar.gz")
    return {"work": work, "wheel": wheel, "sdist": sdist}


def test_wheel_contains_the_package_data_and_nothing_else(built: dict[str, Path]) -> None:
    names = set(zipfile.ZipFile(built["wheel"]).namelist())
    assert "secure_ws/py.typed" in names
    assert "secure_ws/migrations/0001_initial.py" in names
    assert "secure_ws/static/secure_ws/secure-ws.js" in names
    assert any(n.startswith("secure_ws/templates/") and n.endswith(".html") for n in names)
    # Every file of the package in the source tree made it (new migrations, templates, JS).
    package = ROOT / "secure_ws"
    expected = {
        str(path.relative_to(ROOT))
        for path in package.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }
    assert expected <= names, sorted(expected - names)
    top_level = {n.split("/", 1)[0] for n in names}
    assert {n for n in top_level if not n.endswith(".dist-info")} == {"secure_ws"}
    assert not any(n.startswith(("project/", "tests/", "bench/")) for n in names)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"daphne exited:\n{log.read_text(errors='replace')}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"daphne did not listen:\n{log.read_text(errors='replace')}")


def _obtain_token(port: int) -> str:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/token/",
        data=json.dumps({"username": "admin", "password": PASSWORD}).encode(),
        headers={"Content-Type": "application/json", "X-Forwarded-Proto": "https"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return str(json.load(response)["access"])


async def _echo(port: int, token: str) -> tuple[str | None, dict[str, object]]:
    async with connect(
        f"ws://127.0.0.1:{port}/ws/echo/",
        origin=ORIGIN,
        subprotocols=["secure-ws.v1", f"bearer.{token}"],
        additional_headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"},
        proxy=None,
        open_timeout=20,
    ) as conn:
        await conn.send(json.dumps({"type": "echo", "id": "1", "payload": {"text": "hi"}}))
        reply = json.loads(await asyncio.wait_for(conn.recv(), 20))
        return conn.subprotocol, reply


def test_wheel_in_a_new_project_with_the_quickstart(
    built: dict[str, Path], redis_client: object
) -> None:
    work = built["work"]
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(
            ("DJANGO_", "SECURE_", "DEBUG", "ALLOWED_", "PYTHONPATH", "VIRTUAL_ENV")
        )
    }
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    run([str(python), "-m", "pip", "install", "-q", str(built["wheel"])], work, env, timeout=600)

    project = work / "site"
    project.mkdir()
    run([str(venv / "bin" / "django-admin"), "startproject", "mysite", str(project)], work, env)
    for snippet in quickstart_snippets():
        target = project / snippet.path
        if snippet.mode == "append":
            target.write_text(target.read_text() + "\n\n" + snippet.code)
        else:
            target.write_text(snippet.code)

    env.update(
        {
            "SECRET_KEY": secrets.token_urlsafe(50),
            "JWT_SIGNING_KEY": secrets.token_urlsafe(48),
            "REDIS_URL": "redis://127.0.0.1:6379/0",
            "ALLOWED_HOSTS": "app.example.com,127.0.0.1",
            "DJANGO_SUPERUSER_USERNAME": "admin",
            "DJANGO_SUPERUSER_EMAIL": "admin@example.com",
            "DJANGO_SUPERUSER_PASSWORD": PASSWORD,
            "PYTHONWARNINGS": "ignore",
        }
    )
    manage = [str(python), "manage.py"]
    run([*manage, "migrate", "--noinput"], project, env)
    checked = run([*manage, "check", "--deploy", "--fail-level", "WARNING"], project, env)
    assert "System check identified no issues" in checked
    run([*manage, "createsuperuser", "--noinput"], project, env)

    port = _free_port()
    log = work / "daphne.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [
                str(venv / "bin" / "daphne"),
                "-b",
                "127.0.0.1",
                "-p",
                str(port),
                "--websocket-max-message-size",
                "131072",
                "mysite.asgi:application",
            ],
            cwd=project,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_for_port(port, server, log)
        token = _obtain_token(port)
        subprotocol, reply = asyncio.run(_echo(port, token))
    finally:
        server.terminate()
        server.wait(timeout=20)
    assert subprotocol == "secure-ws.v1"
    assert reply == {"type": "echo", "id": "1", "payload": {"text": "hi", "user": "admin"}}
    assert token not in log.read_text(errors="replace")
