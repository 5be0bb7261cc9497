"""Shared fixtures: real services, demo users, tokens, and real daphne processes."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent
DEMO_PASSWORD = "demo-password-123"


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def pytest_sessionstart(session: pytest.Session) -> None:
    """Fail the run (never skip) when PostgreSQL or Redis is not there."""
    missing = [
        name
        for name, port in (("PostgreSQL", 5432), ("Redis", 6379))
        if not _reachable("127.0.0.1", port)
    ]
    if missing:
        pytest.exit(f"required services are not reachable: {', '.join(missing)}", returncode=3)


#: The shape of the per-run prefix that tests/settings.py generates; only such a prefix is
#: ever cleaned up, so a developer's own ``SECURE_WS_KEY_PREFIX`` keys are never touched.
RUN_KEY_PREFIX = re.compile(r"swtest-[0-9a-f]{12}")
#: Bounds of the clean-up: keys per SCAN step and per UNLINK, and SCAN steps at most.
CLEANUP_BATCH = 500
CLEANUP_MAX_STEPS = 2000


def delete_run_keys(client: redis.Redis, prefix: str) -> int:
    """UNLINK every key under ``prefix`` (this run's ``KEY_PREFIX``); return how many.

    SCAN, never KEYS, so a shared Redis is not blocked; the glob characters of the prefix
    are escaped so that the pattern matches this run's keys and nothing else.
    """
    pattern = re.sub(r"([*?\[\]\\])", r"\\\1", prefix) + "*"
    deleted = 0
    cursor = 0
    for _ in range(CLEANUP_MAX_STEPS):
        cursor, keys = client.scan(cursor=cursor, match=pattern, count=CLEANUP_BATCH)
        if keys:
            deleted += int(client.unlink(*keys))
        if cursor == 0:
            break
    return deleted


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Delete this run's Redis keys (``folder_seq``, caps, tickets, ...) when the run ends."""
    if not settings.configured:
        return
    prefix = str(getattr(settings, "SECURE_WS", {}).get("KEY_PREFIX", ""))
    redis_url = getattr(settings, "REDIS_URL", None)
    if not redis_url or not RUN_KEY_PREFIX.fullmatch(prefix):
        return
    try:
        client = redis.Redis.from_url(redis_url, socket_timeout=5)
        try:
            delete_run_keys(client, prefix)
        finally:
            client.close()
    except redis.RedisError as exc:
        warnings.warn(f"could not delete this run's Redis keys: {exc}", stacklevel=1)


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """Stop this process's audit writer before the test database is dropped.

    Its background thread may hold a connection mid-flush, and PostgreSQL refuses to drop a
    database that is in use.
    """
    yield
    from secure_ws.audit.writer import stop_writer

    with django_db_blocker.unblock():
        stop_writer()


@pytest.fixture(autouse=True)
def _audit_writer_settles_before_db_teardown(request: pytest.FixtureRequest) -> Iterator[None]:
    """Flush and stop this process's audit writer before the test database is reset.

    A flusher thread inserting audit rows while pytest-django TRUNCATEs the tables after a
    transactional test deadlocks in PostgreSQL. Requesting the test's database fixture
    first makes this teardown run before the database's; the writer starts again with the
    next audit record.
    """
    database = [name for name in ("transactional_db", "db") if name in request.fixturenames]
    for name in database:
        request.getfixturevalue(name)
    yield
    if database:
        from secure_ws.audit.writer import stop_writer

        stop_writer()


@pytest.fixture(autouse=True)
def _fresh_refusal_log_windows() -> None:
    """Each test starts with the refusal log limiter empty (it bounds lines per interval)."""
    from secure_ws.gate.refusal import refusal_log_limiter

    refusal_log_limiter.clear()


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    """A synchronous client on the test Redis."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    yield client
    client.close()


@pytest.fixture
def demo_users(transactional_db: None) -> dict[str, Any]:
    """The demo users from ``demo_seed``, committed so that daphne processes see them."""
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    with open(os.devnull, "w") as devnull:
        call_command("demo_seed", password=DEMO_PASSWORD, stdout=devnull)
    user_model = get_user_model()
    return {u.username: u for u in user_model.objects.all()}


def access_token_for(user: Any, **claims: Any) -> str:
    """A signed simplejwt access token for ``user`` with extra ``claims``."""
    from rest_framework_simplejwt.tokens import AccessToken

    token = AccessToken.for_user(user)
    for key, value in claims.items():
        token[key] = value
    return str(token)


@pytest.fixture
def token_for() -> Callable[..., str]:
    return access_token_for


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class DaphneServer:
    """A real daphne process serving an ASGI application on a loopback port."""

    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def _wait_for_port(port: int, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"daphne exited early:\n{log_path.read_text(errors='replace')}")
        if _reachable("127.0.0.1", port):
            return
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"daphne did not listen in time:\n{log_path.read_text(errors='replace')}")


@pytest.fixture
def daphne_server(transactional_db: None, tmp_path: Path) -> Iterator[Callable[..., DaphneServer]]:
    """Start real daphne processes on free loopback ports; stop them after the test.

    Call it as ``daphne_server(application="project.asgi:application", env={...},
    daphne_args=[...])``. The processes use the test database (whose rows the test must
    commit: this fixture implies ``transactional_db``) and the run's Redis key prefix.
    """
    from django.db import connection

    servers: list[DaphneServer] = []
    db = connection.settings_dict

    def start(
        application: str = "project.asgi:application",
        env: dict[str, str] | None = None,
        daphne_args: list[str] | None = None,
        settings_module: str = "tests.settings",
    ) -> DaphneServer:
        port = free_port()
        log_path = tmp_path / f"daphne-{port}.log"
        port_origin = f"http://127.0.0.1:{port},http://localhost:{port}"
        server_env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": settings_module,
            "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
            "SECURE_WS_ALLOWED_ORIGINS": port_origin,
            "SECURE_WS_REQUIRE_TLS": "0",
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        command = [
            sys.executable,
            "-m",
            "daphne",
            "-b",
            "127.0.0.1",
            "-p",
            str(port),
            *(daphne_args or []),
            application,
        ]
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                command, cwd=ROOT, env=server_env, stdout=log_file, stderr=subprocess.STDOUT
            )
        server = DaphneServer(port=port, process=process, log_path=log_path, env=server_env)
        servers.append(server)
        _wait_for_port(port, process, log_path)
        return server

    yield start
    for server in servers:
        server.stop()
