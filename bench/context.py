"""One benchmark run's shared set-up: private Redis, seeded database, tokens, machine facts."""

from __future__ import annotations

import contextlib
import os
import platform
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from bench.loadgen import raise_fd_limit
from bench.services import (
    RedisServer,
    Server,
    Stack,
    configure_environment,
    prepare_database,
    start_servers,
)


@dataclass(frozen=True)
class RunOptions:
    """What ``bench/run`` was asked for."""

    quick: bool = False
    scenarios: list[str] = field(default_factory=list)
    rounds: int = 3
    #: Many-connections mode: the memory levels (e.g. ``[10000, 20000]``); empty otherwise.
    connections: list[int] = field(default_factory=list)
    #: Client processes that hold connections; 0 = one per 5,000.
    clients: int = 0


@dataclass
class BenchContext:
    """What every scenario needs: the tokens, the options and the current round."""

    redis: RedisServer
    tokens: list[str]
    options: RunOptions = field(default_factory=RunOptions)
    round: int = 0
    _pool: dict[str, Server] = field(default_factory=dict)

    @property
    def quick(self) -> bool:
        return self.options.quick

    def ordered(self, stacks: list[Stack]) -> list[Stack]:
        """``stacks`` forward in even rounds, reversed in odd ones (alternating rounds)."""
        return list(stacks) if self.round % 2 == 0 else list(reversed(stacks))

    def shared_server(self, spec: Stack) -> Server:
        """The round's server of ``spec``, started at first use.

        Handshakes and messages run against the same process in one round (server
        start-up is most of a quick run's time); memory and fan-out start their own,
        because their figures need a fresh process or two of them.
        """
        self.start_shared([spec])
        return self._pool[spec[0]]

    def start_shared(self, specs: list[Stack]) -> None:
        """Start the round's servers of ``specs`` not yet running, all at once."""
        missing = [spec for spec in specs if spec[0] not in self._pool]
        for spec, started in zip(missing, start_servers(missing), strict=True):
            self._pool[spec[0]] = started

    def end_round(self) -> None:
        """Stop the round's shared servers."""
        while self._pool:
            self._pool.popitem()[1].stop()

    def target_job(self, stack: str, port: int, path: str = "/ws/echo/") -> dict[str, Any]:
        """The load-generator fields that say where and how to connect to ``stack``."""
        auth = {"floor": "none", "diy": "query", "catm": "header", "secure": "bearer"}[stack]
        return {"port": port, "path": path, "auth": auth, "tokens": self.tokens}


def machine_facts() -> dict[str, Any]:
    """nproc, CPU model, memory and versions, for the results header."""
    cpu = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with contextlib.suppress(OSError), open("/proc/meminfo") as meminfo:
        mem_kib = int(meminfo.readline().split()[1])
    load = os.getloadavg()
    import channels
    import daphne
    import django
    import uvicorn

    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "python": platform.python_version(),
        "django": django.get_version(),
        "channels": channels.__version__,
        "daphne": daphne.__version__,
        "uvicorn": uvicorn.__version__,
        "loadavg_at_start": [round(x, 2) for x in load],
        "fd_limit": raise_fd_limit(),
    }


@contextlib.contextmanager
def bench_context(options: RunOptions) -> Iterator[BenchContext]:
    """Start the private Redis, seed the database and yield the run's context."""
    redis = RedisServer()
    redis.start()
    try:
        configure_environment(redis.url)
        tokens = prepare_database()
        ctx = BenchContext(redis=redis, tokens=tokens, options=options)
        try:
            yield ctx
        finally:
            ctx.end_round()
    finally:
        redis.stop()
