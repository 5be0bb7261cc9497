"""Packaging proof: the built wheel works in a brand-new project set up by the quickstart.

Builds the sdist and wheel from a copy of the source tree, installs the wheel with
``[all]`` into a fresh virtualenv, runs ``django-admin startproject`` and applies
docs/quickstart.md's marked blocks verbatim: the files, the secrets, then "Try it
locally" (``DEBUG=1``, migrate, createsuperuser, daphne, and the page's own websockets
script, which must print the echo and, under DEBUG, the refusal's reason) and "Go to
production" (migrate, ``check --deploy`` without a warning, daphne, an authenticated
connection with nginx's TLS termination played by ``X-Forwarded-*`` headers from a trusted
peer, and a bare 403 for a refused one). The only change to a block is the port: 8001 on
the page, a free port here.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
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
from websockets.exceptions import InvalidStatus

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "docs" / "quickstart.md"
_BLOCK = re.compile(
    r"<!-- quickstart: (?P<mode>\w+) (?P<path>\S+) -->\s*```\w+\n(?P<code>.*?)```",
    re.DOTALL,
)
#: The port the page uses; the test substitutes a free one.
DOC_PORT = "8001"
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
#: The superuser's password in "Try it locally" (the page's own, on purpose).
LOCAL_PASSWORD = "change-me-locally"


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
    targets = [(s.mode, s.path) for s in quickstart_snippets()]
    assert targets == [
        ("env", "secrets"),
        ("append", "mysite/settings.py"),
        ("write", "mysite/consumers.py"),
        ("write", "mysite/asgi.py"),
        ("append", "mysite/urls.py"),
        ("env", "local"),
        ("shell", "local"),
        ("client", "local"),
        ("env", "production"),
        ("shell", "production"),
    ]


def snippet(mode: str, path: str) -> str:
    (code,) = [s.code for s in quickstart_snippets() if (s.mode, s.path) == (mode, path)]
    return code


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
    """POST /api/token/ as nginx would forward it: Host of the site, X-Forwarded-Proto."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/token/",
        data=json.dumps({"username": "admin", "password": LOCAL_PASSWORD}).encode(),
        headers={
            "Content-Type": "application/json",
            "Host": "app.example.com",
            "X-Forwarded-Proto": "https",
        },
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return str(json.load(response)["access"])


async def _echo(
    port: int, token: str, origin: str = ORIGIN
) -> tuple[str | None, dict[str, object]]:
    """The production handshake behind nginx: Host, X-Forwarded-Proto/-For from 127.0.0.1."""
    async with connect(
        "ws://app.example.com/ws/echo/",
        host="127.0.0.1",
        port=port,
        origin=origin,  # type: ignore[arg-type]
        subprotocols=["secure-ws.v1", f"bearer.{token}"],  # type: ignore[list-item]
        additional_headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"},
        proxy=None,
        open_timeout=20,
    ) as conn:
        await conn.send(json.dumps({"type": "echo", "id": "1", "payload": {"text": "hi"}}))
        reply = json.loads(await asyncio.wait_for(conn.recv(), 20))
        return conn.subprotocol, reply


def apply_env(code: str, env: dict[str, str], cwd: Path) -> dict[str, str]:
    """Run an ``env`` block in bash and return the environment it leaves."""
    script = f"set -euo pipefail\n{code}\nenv -0"
    output = subprocess.run(
        ["bash", "-c", script], cwd=cwd, env=env, capture_output=True, timeout=60, check=True
    ).stdout.decode()
    return dict(entry.split("=", 1) for entry in output.split("\0") if "=" in entry)


def run_shell(code: str, env: dict[str, str], cwd: Path, port: int) -> list[str]:
    """Run a ``shell`` block but its last line (the server); return that line, split."""
    *commands, server = code.replace(DOC_PORT, str(port)).strip().splitlines()
    assert server.startswith("daphne "), server
    for command in commands:
        run(["bash", "-c", f"set -euo pipefail\n{command}"], cwd, env)
    return shlex.split(server)


class Daphne:
    """The daphne command of a ``shell`` block, started in the background."""

    def __init__(self, command: list[str], cwd: Path, env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT
            )

    def __enter__(self) -> Daphne:
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.wait(timeout=20)


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
            ("DJANGO_", "SECURE_", "DEBUG", "ALLOWED_", "PYTHONPATH", "VIRTUAL_ENV", "REDIS_")
        )
        and key not in ("SECRET_KEY", "JWT_SIGNING_KEY")
    }
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}"  # an activated venv
    env["PYTHONWARNINGS"] = "ignore"
    wheel = f"{built['wheel']}[all]"
    run([str(python), "-m", "pip", "install", "-q", wheel], work, env, timeout=600)

    project = work / "site"
    project.mkdir()
    run([str(venv / "bin" / "django-admin"), "startproject", "mysite", str(project)], work, env)
    for piece in quickstart_snippets():
        if piece.mode not in ("append", "write"):
            continue
        target = project / piece.path
        if piece.mode == "append":
            target.write_text(target.read_text() + "\n\n" + piece.code)
        else:
            target.write_text(piece.code)

    secrets_env = apply_env(snippet("env", "secrets"), env, project)
    assert len(secrets_env["SECRET_KEY"]) >= 50
    assert secrets_env["JWT_SIGNING_KEY"] != secrets_env["SECRET_KEY"]

    # Try it locally: DEBUG, ws://, the page's own client script.
    port = _free_port()
    local_env = apply_env(snippet("env", "local"), secrets_env, project)
    local_env["ALLOWED_ORIGINS"] = local_env["ALLOWED_ORIGINS"].replace(DOC_PORT, str(port))
    daphne = run_shell(snippet("shell", "local"), local_env, project, port)
    with Daphne(daphne, project, local_env, work / "daphne-local.log") as server:
        _wait_for_port(port, server.process, server.log)
        client = work / "client.py"
        client.write_text(snippet("client", "local").replace(DOC_PORT, str(port)))
        printed = run([str(python), str(client)], project, local_env).splitlines()
    echo, refusal = (json.loads(line) for line in printed)
    assert echo == {"type": "echo", "id": "1", "payload": {"text": "hi", "user": "admin"}}
    assert refusal == {"type": "error", "payload": {"code": "origin_refused"}}

    # Go to production: DEBUG off, check --deploy clean, TLS from the (played) proxy.
    port = _free_port()
    prod_env = apply_env(snippet("env", "production"), secrets_env, project)
    daphne = run_shell(snippet("shell", "production"), prod_env, project, port)
    log = work / "daphne-production.log"
    with Daphne(daphne, project, prod_env, log) as server:
        _wait_for_port(port, server.process, log)
        token = _obtain_token(port)
        subprotocol, reply = asyncio.run(_echo(port, token))
        with pytest.raises(InvalidStatus) as refused:
            asyncio.run(_echo(port, token, origin="https://evil.example"))
    assert subprotocol == "secure-ws.v1"
    assert reply == {"type": "echo", "id": "1", "payload": {"text": "hi", "user": "admin"}}
    assert refused.value.response.status_code == 403
    assert b"origin" not in (refused.value.response.body or b"")
    assert token not in log.read_text(errors="replace")
