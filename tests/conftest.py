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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
from django.conf import settings

pytest_plugins = ["secure_ws.testing.pytest_plugin"]

ROOT = Path(__file__).resolve().parent.parent
DEMO_PASSWORD = "demo-password-123"


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


#: Fixtures that reach PostgreSQL or Redis (directly or through a server process): a test
#: marked ``unit`` must use none of them.
SERVICE_FIXTURES = frozenset(
    {
        "db",
        "transactional_db",
        "django_db_setup",
        "live_server",
        "redis_client",
        "demo_users",
        "asgi_server",
        "daphne_server",
    }
)

#: Set once the services a selected test needs were found (after collection): only then
#: does the session's end clean up Redis.
_services_needed = pytest.StashKey[bool]()


def is_unit(item: pytest.Item) -> bool:
    """Whether ``item`` is a pure unit test: marked ``unit``, it needs no PostgreSQL or Redis."""
    return item.get_closest_marker("unit") is not None


def required_services() -> list[tuple[str, str, int]]:
    """The services the integration tests use, as the test settings configure them."""
    db = settings.DATABASES["default"]
    redis_url = urlsplit(settings.REDIS_URL or "redis://127.0.0.1:6379")
    return [
        ("PostgreSQL", str(db.get("HOST") or "127.0.0.1"), int(db.get("PORT") or 5432)),
        ("Redis", redis_url.hostname or "127.0.0.1", redis_url.port or 6379),
    ]


def pytest_collection_finish(session: pytest.Session) -> None:
    """Fail the run (never skip) when a selected test needs PostgreSQL or Redis and one is away.

    A run that selects only ``unit`` tests (``pytest -m unit``) needs neither and starts
    without them; any other selection, the full suite first of all, checks them first.
    """
    misplaced = [
        item.nodeid
        for item in session.items
        if is_unit(item)
        and (SERVICE_FIXTURES & set(item.fixturenames) or item.get_closest_marker("django_db"))
    ]
    if misplaced:
        raise pytest.UsageError(
            "tests marked unit use PostgreSQL or Redis fixtures: " + ", ".join(misplaced)
        )
    if all(is_unit(item) for item in session.items):
        return
    missing = [
        f"{name} ({host}:{port})"
        for name, host, port in required_services()
        if not _reachable(host, port)
    ]
    if missing:
        pytest.exit(
            f"required services are not reachable: {', '.join(missing)}. The selected tests "
            "need them (only `pytest -m unit` runs without them).",
            returncode=3,
        )
    session.config.stash[_services_needed] = True


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
    if not settings.configured or not session.config.stash.get(_services_needed, False):
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
    """Stop this process's audit writer and close thread connections before the drop.

    Its background thread may hold a connection mid-flush, so may Channels' database thread,
    and PostgreSQL refuses to drop a database that is in use.
    """
    yield
    from asgiref.sync import SyncToAsync
    from django.db import connections

    from secure_ws.audit.writer import stop_writer

    with django_db_blocker.unblock():
        stop_writer()
        # Consumers close stale connections at most once a second (secure_ws.consumer.
        # audited), so the thread async tests run ORM calls in may still hold one.
        SyncToAsync.single_thread_executor.submit(connections.close_all).result()


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


#: The ASGI servers the end-to-end security tests run on. A test marked
#: ``@pytest.mark.servers`` (or a module with it in ``pytestmark``) that uses ``asgi_server``
#: runs once per server; ``@pytest.mark.servers("uvicorn")`` picks some.
SERVER_KINDS = ("daphne", "uvicorn")
#: ``SECURE_WS_TEST_SERVERS=daphne`` runs the ``servers`` tests on those servers only (the
#: second CI pass: what changes with the Django version is not the ASGI server's part).
TEST_SERVERS = tuple(
    kind
    for kind in os.environ.get("SECURE_WS_TEST_SERVERS", ",".join(SERVER_KINDS)).split(",")
    if kind
)

#: uvicorn as deploy/uvicorn.sh runs it, minus the limits (the daphne processes run with
#: daphne's defaults too): the gate is the only authority for proxy headers
#: (``--no-proxy-headers``), no compression, the demo's lifespan handler flushes the audit
#: trail at shutdown (``auto``: the test applications without one start too). A short
#: graceful-shutdown bound (deploy: 10 s): at SIGTERM uvicorn waits for every consumer task,
#: and a channels-redis receive cancelled in the middle of its blocking Redis read takes
#: seconds to end (daphne cancels and moves on); tests need not wait for that.
UVICORN_ARGS = (
    "--ws",
    "websockets-sansio",
    "--lifespan",
    "auto",
    "--no-proxy-headers",
    "--ws-per-message-deflate",
    "false",
    "--timeout-graceful-shutdown",
    "3",
)


@dataclass(frozen=True)
class ServerTraits:
    """What each server does differently, so that one test asserts each server's behaviour.

    Only real differences of the servers live here; everything else is asserted the same.
    """

    kind: str
    #: Close codes the server can send: daphne (autobahn) sends only 1000 and 3000-4999,
    #: so the consumer falls back to the 4xxx stand-in (``private_close_code``).
    sends_standard_close_codes: bool
    #: Whether the server turns a ``Daphne-Root-Path`` header into ``scope["root_path"]``
    #: (only daphne does; the gate refuses it from an untrusted peer, uvicorn ignores it).
    honours_root_path_header: bool
    #: Whether the server parses ``Origin`` itself and answers 400 to a port it cannot read
    #: before the application sees the handshake (autobahn does; uvicorn leaves it to the
    #: gate, which answers 403).
    rejects_unparsable_origin_port: bool
    #: Whether repeated header lines reach the application joined into one value (autobahn
    #: joins them; uvicorn passes each line and the gate refuses the duplicate).
    joins_repeated_headers: bool
    #: Whether the server answers 400 itself to a header value holding a control character
    #: other than HTAB (ESC, BEL, DEL, ...; RFC 9110 5.5 lets a recipient reject them):
    #: uvicorn's HTTP parser (httptools) does, autobahn passes them on to the gate.
    rejects_control_characters_in_headers: bool

    def close_code(self, code: int) -> int:
        """The close code a client receives when the application closes with ``code``."""
        from secure_ws.codes import private_close_code

        return code if self.sends_standard_close_codes else private_close_code(code)


SERVER_TRAITS = {
    "daphne": ServerTraits(
        "daphne",
        sends_standard_close_codes=False,
        honours_root_path_header=True,
        rejects_unparsable_origin_port=True,
        joins_repeated_headers=True,
        rejects_control_characters_in_headers=False,
    ),
    "uvicorn": ServerTraits(
        "uvicorn",
        sends_standard_close_codes=True,
        honours_root_path_header=False,
        rejects_unparsable_origin_port=False,
        joins_repeated_headers=False,
        rejects_control_characters_in_headers=True,
    ),
}


@dataclass
class ServerProcess:
    """A real ASGI server process (daphne, or uvicorn: ``kind``) on a loopback port."""

    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    kind: str = "daphne"
    #: Where :meth:`log` starts reading (bytes): see :meth:`since_now`.
    log_start: int = 0

    @property
    def expect(self) -> ServerTraits:
        """This server's entry of the per-server expectation table."""
        return SERVER_TRAITS[self.kind]

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
        with self.log_path.open("rb") as log_file:
            log_file.seek(self.log_start)
            return log_file.read().decode(errors="replace")

    def since_now(self) -> ServerProcess:
        """The same process, whose :meth:`log` shows only what is logged from now on.

        A server shared by a module's tests (``shared_asgi_server``) hands each test such a
        view, so that a test's log assertions see its own lines only.
        """
        return replace(self, log_start=self.log_path.stat().st_size)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


#: The name the daphne-only tests know it by.
DaphneServer = ServerProcess


def _wait_for_port(port: int, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{log_path.read_text(errors='replace')}")
        if _reachable("127.0.0.1", port):
            return
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"server did not listen in time:\n{log_path.read_text(errors='replace')}")


#: Ports a server start tries when the one it picked was taken before it could bind.
PORT_ATTEMPTS = 3


def _server_command(
    kind: str,
    port: int,
    application: str,
    daphne_args: list[str] | None,
    uvicorn_args: list[str] | None,
) -> list[str]:
    if kind == "daphne":
        return [
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
    if kind == "uvicorn":
        return [
            sys.executable,
            "-m",
            "uvicorn",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            *(UVICORN_ARGS if uvicorn_args is None else uvicorn_args),
            application,
        ]
    raise ValueError(f"unknown server kind {kind!r}; expected one of {SERVER_KINDS}")


def _server_starter(
    tmp_path: Path, default_kind: str, servers: list[ServerProcess]
) -> Callable[..., ServerProcess]:
    from django.db import connection

    db = connection.settings_dict

    def start(
        application: str = "project.asgi:application",
        env: dict[str, str] | None = None,
        daphne_args: list[str] | None = None,
        settings_module: str = "tests.settings",
        *,
        uvicorn_args: list[str] | None = None,
        kind: str | None = None,
    ) -> ServerProcess:
        server_kind = kind or default_kind
        for attempt in range(1, PORT_ATTEMPTS + 1):
            port = free_port()
            log_path = tmp_path / f"{server_kind}-{port}.log"
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
            command = _server_command(server_kind, port, application, daphne_args, uvicorn_args)
            with log_path.open("wb") as log_file:
                process = subprocess.Popen(
                    command, cwd=ROOT, env=server_env, stdout=log_file, stderr=subprocess.STDOUT
                )
            server = ServerProcess(
                port=port, process=process, log_path=log_path, env=server_env, kind=server_kind
            )
            servers.append(server)
            try:
                _wait_for_port(port, process, log_path)
            except RuntimeError as exc:
                # Another program took the free port between free_port() and the bind.
                if attempt < PORT_ATTEMPTS and "address already in use" in str(exc).lower():
                    continue
                raise
            break
        return server

    return start


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "servers(*kinds): run the test once per ASGI server through the asgi_server fixture "
        f"(default: {', '.join(SERVER_KINDS)})",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize ``server_kind`` for tests marked ``servers`` (the one place to choose)."""
    marker = metafunc.definition.get_closest_marker("servers")
    if marker is None:
        return
    kinds = marker.args or SERVER_KINDS
    if "shared_server_kind" in metafunc.fixturenames:
        # One server per module and kind: the tests are grouped by kind.
        metafunc.parametrize("shared_server_kind", kinds, indirect=True, scope="module")
    elif "server_kind" in metafunc.fixturenames:
        metafunc.parametrize("server_kind", kinds, indirect=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect (never skip) the runs on servers ``SECURE_WS_TEST_SERVERS`` leaves out."""
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        kind = params.get("server_kind", params.get("shared_server_kind"))
        (dropped if kind is not None and kind not in TEST_SERVERS else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture
def server_kind(request: pytest.FixtureRequest) -> str:
    """The ASGI server of this test: the ``servers`` marker's parameter, else daphne."""
    if hasattr(request, "param"):
        return str(request.param)
    if "shared_server_kind" in request.fixturenames:
        return str(request.getfixturevalue("shared_server_kind"))
    return "daphne"


@pytest.fixture(scope="module")
def shared_server_kind(request: pytest.FixtureRequest) -> str:
    """The ASGI server of a module's shared servers (``servers`` marker), else daphne."""
    return str(getattr(request, "param", "daphne"))


@pytest.fixture(scope="module")
def shared_asgi_server(
    django_db_setup: None, tmp_path_factory: pytest.TempPathFactory, shared_server_kind: str
) -> Iterator[Callable[..., ServerProcess]]:
    """``asgi_server`` for a whole module: each process starts once per module and kind.

    For tests that only connect to a server and read its log (hand each test
    ``server.since_now()``); a test that needs a fresh process, its own settings or
    environment keeps using ``asgi_server``. The processes use the test database, whose
    rows each test still commits itself (``transactional_db``).
    """
    servers: list[ServerProcess] = []
    yield _server_starter(tmp_path_factory.mktemp("servers"), shared_server_kind, servers)
    for server in servers:
        server.stop()


@pytest.fixture
def asgi_server(
    transactional_db: None, tmp_path: Path, server_kind: str
) -> Iterator[Callable[..., ServerProcess]]:
    """Start real ASGI server processes (``server_kind``) on free loopback ports.

    Same call as ``daphne_server``, plus ``uvicorn_args=[...]`` (replaces ``UVICORN_ARGS``)
    and ``kind=`` to start another server than the test's. ``server.expect`` holds what the
    server does differently (``ServerTraits``).
    """
    servers: list[ServerProcess] = []
    yield _server_starter(tmp_path, server_kind, servers)
    for server in servers:
        server.stop()


@pytest.fixture
def daphne_server(transactional_db: None, tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Start real daphne processes on free loopback ports; stop them after the test.

    Call it as ``daphne_server(application="project.asgi:application", env={...},
    daphne_args=[...])``. The processes use the test database (whose rows the test must
    commit: this fixture implies ``transactional_db``) and the run's Redis key prefix.
    Tests that should run on every server use ``asgi_server`` and the ``servers`` marker.
    """
    servers: list[ServerProcess] = []
    yield _server_starter(tmp_path, "daphne", servers)
    for server in servers:
        server.stop()
