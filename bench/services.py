"""What a benchmark run needs around the code under test: Redis, the database, the servers.

The run starts its own ``redis-server`` on a free loopback port (never the machine's shared
one), creates and seeds its own database (``secure_ws_bench`` on the local PostgreSQL, or
``BENCH_DATABASE_URL``), mints access tokens for the seeded users, and starts each server
under test as its own process (daphne, or uvicorn) with the bench settings.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench.deploy_flags import daphne_flags, uvicorn_flags

Stack = tuple[str, str, str, dict[str, str]]

#: Every scenario compares these: (label, stack, server, extra environment).
COMPARED_STACKS: list[Stack] = [
    ("floor", "floor", "daphne", {}),
    ("diy", "diy", "daphne", {}),
    ("catm", "catm", "daphne", {}),
    ("secure", "secure", "daphne", {"BENCH_AUDIT": "1"}),
    ("floor-uvicorn", "floor", "uvicorn", {}),
    ("secure-uvicorn", "secure", "uvicorn", {"BENCH_AUDIT": "1"}),
]
#: secure_ws with every audit sink off (the audit on/off ratio; handshakes only).
NOAUDIT_STACK: Stack = ("secure-noaudit", "secure", "daphne", {"BENCH_AUDIT": "0"})


def stacks_named(*labels: str) -> list[Stack]:
    """The stacks with these labels, in the order given."""
    known = {stack[0]: stack for stack in [*COMPARED_STACKS, NOAUDIT_STACK]}
    return [known[label] for label in labels]


ROOT = Path(__file__).resolve().parent.parent
#: Users the bench seeds (``bench0`` ...), all members of folder :data:`FOLDER`.
USER_COUNT = 50
FOLDER = "bench"
LOG_DIR = Path(tempfile.gettempdir()) / "secure_ws_bench_logs"
#: Stack name -> the ASGI application (in :mod:`bench.apps`) that serves it.
APPLICATIONS = {
    "floor": "bench.apps:floor_application",
    "diy": "bench.apps:diy_application",
    "catm": "bench.apps:catm_application",
    "secure": "bench.apps:secure_application",
}


def free_port() -> int:
    """Return a free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """Wait until ``port`` accepts connections, or raise if ``process`` died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listened on port {port} within {timeout} s")


@dataclass
class RedisServer:
    """A private ``redis-server`` on a free loopback port (no persistence)."""

    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.process = subprocess.Popen(
            [
                binary,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--daemonize", "no",
                "--maxclients", "20000",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for_port(self.port, self.process)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


def configure_environment(redis_url: str, audit: bool = True) -> dict[str, str]:
    """Point this process (and the children it starts) at the bench's Redis and DB."""
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"
    os.environ["BENCH_REDIS_URL"] = redis_url
    os.environ.setdefault("SECURE_WS_KEY_PREFIX", f"swbench-{uuid.uuid4().hex[:12]}")
    os.environ["BENCH_AUDIT"] = "1" if audit else "0"
    return dict(os.environ)


def _create_database(url: str) -> None:
    if not url.startswith("postgres"):
        return
    import psycopg

    base, _, name = url.rpartition("/")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


def prepare_database() -> list[str]:
    """Create, migrate and seed the bench database; return one access token per user.

    Must run after :func:`configure_environment` (it sets up Django in this process).
    """
    import django

    url = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/secure_ws_bench")
    _create_database(url)
    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from rest_framework_simplejwt.tokens import AccessToken

    from project.filebox.models import Folder, Membership

    call_command("migrate", verbosity=0, interactive=False)
    folder, _ = Folder.objects.get_or_create(slug=FOLDER, defaults={"name": "Bench"})
    tokens = []
    for index in range(USER_COUNT):
        user, created = get_user_model().objects.get_or_create(username=f"bench{index}")
        if created:
            user.set_unusable_password()
            user.save()
        Membership.objects.get_or_create(
            folder=folder, user=user, defaults={"access": Membership.WRITE}
        )
        tokens.append(str(AccessToken.for_user(user)))
    from django.db import connections

    connections.close_all()
    return tokens


@dataclass
class Server:
    """One server process under test."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    def rss_kib(self) -> int:
        """Resident set size of the server process, in KiB (from /proc)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("VmRSS not found")

    def open_fds(self) -> int:
        """Number of open file descriptors of the server process."""
        return len(os.listdir(f"/proc/{self.process.pid}/fd"))

    def wait_ready(self) -> Server:
        """Wait until the server listens; raise with the end of its log if it died."""
        try:
            wait_for_port(self.port, self.process)
        except RuntimeError as exc:
            raise RuntimeError(f"{self.name}: {exc}\n{self.log_path.read_text()[-3000:]}") from exc
        return self

    def stop(self, graceful: bool = False) -> None:
        """End the process: SIGKILL unless ``graceful`` (SIGTERM, then SIGKILL after 15 s).

        The bench measures serving, not shutting down: a graceful stop costs up to daphne's
        ``--application-close-timeout`` per server, most of a quick run's idle time.
        """
        if self.process.poll() is None:
            if not graceful:
                self.process.kill()
                self.process.wait(timeout=10)
                return
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)

    def close(self) -> None:
        """``stop()``, for ``contextlib.closing``."""
        self.stop()


def start_server(stack: str, server: str = "daphne", env: dict[str, str] | None = None) -> Server:
    """Start ``stack`` (``floor``/``diy``/``secure``) on ``server`` and wait until it listens."""
    return launch_server(stack, server, env).wait_ready()


def launch_server(stack: str, server: str = "daphne", env: dict[str, str] | None = None) -> Server:
    """Start the process of ``stack`` on ``server`` on a free port; do not wait for it."""
    port = free_port()
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log_path = LOG_DIR / f"{stack}-{server}-{port}.log"
    application = APPLICATIONS[stack]
    # Both servers run with the deployment's flags (deploy/daphne.env, deploy/uvicorn.sh);
    # only logging differs: daphne as deployed writes no access log, so uvicorn's is off too
    # (the bench measures the ASGI stack, not log I/O).
    if server == "daphne":
        command = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "-v", "0"]
        command += [*daphne_flags(), application]
    elif server == "uvicorn":
        command = [
            sys.executable, "-m", "uvicorn", application,
            "--host", "127.0.0.1", "--port", str(port), *uvicorn_flags(),
            "--no-access-log", "--log-level", "warning",
        ]  # fmt: skip
    else:
        raise ValueError(f"unknown server {server!r}")
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env={**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"},
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_raise_child_fd_limit,
        )
    return Server(name=f"{stack}/{server}", port=port, process=process, log_path=log_path)


def start_servers(specs: list[Stack]) -> list[Server]:
    """Start one server per spec, all at once (start-up is mostly waiting), in order."""
    launched: list[Server] = []
    try:
        for _, stack, server, env in specs:
            launched.append(launch_server(stack, server, env))
        return [item.wait_ready() for item in launched]
    except BaseException:
        for item in launched:
            item.stop()
        raise


def _raise_child_fd_limit() -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@contextlib.contextmanager
def servers(*specs: tuple[str, str], env: dict[str, str] | None = None) -> Iterator[list[Server]]:
    """Start the ``(stack, server)`` pairs (at once); stop them all afterwards."""
    started = start_servers(
        [(f"{stack}/{server}", stack, server, env or {}) for stack, server in specs]
    )
    try:
        yield started
    finally:
        for item in started:
            item.stop()
