"""One benchmark run's shared set-up: private Redis, seeded database, tokens, machine facts."""

from __future__ import annotations

import contextlib
import os
import platform
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from bench.loadgen import raise_fd_limit
from bench.services import RedisServer, configure_environment, prepare_database


@dataclass
class BenchContext:
    """What every scenario needs: the tokens, the quick flag and the results so far."""

    redis: RedisServer
    tokens: list[str]
    quick: bool
    results: dict[str, Any] = field(default_factory=dict)

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
def bench_context(quick: bool) -> Iterator[BenchContext]:
    """Start the private Redis, seed the database and yield the run's context."""
    redis = RedisServer()
    redis.start()
    try:
        configure_environment(redis.url)
        tokens = prepare_database()
        yield BenchContext(redis=redis, tokens=tokens, quick=quick)
    finally:
        redis.stop()
