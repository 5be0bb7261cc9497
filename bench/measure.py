"""Driving the load-generator processes and summarising what they measured."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from bench.services import ROOT


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0..100) by nearest rank; ``nan`` for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def summarise_latencies(latencies: list[float]) -> dict[str, float]:
    """p50 and p99 in milliseconds."""
    return {
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
    }


def _spawn() -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bench.loadgen"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def run_loadgen(job: dict[str, Any], timeout: float = 300) -> dict[str, Any]:
    """Run one load-generator job in its own process and return its result."""
    process = _spawn()
    try:
        out, _ = process.communicate(json.dumps(job) + "\n", timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise
    if process.returncode != 0:
        raise RuntimeError(f"load generator failed ({process.returncode})")
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


class HoldSession:
    """A ``hold`` job: connections opened in steps, held until told to go on."""

    def __init__(self, job: dict[str, Any]) -> None:
        self.process = _spawn()
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({**job, "kind": "hold"}) + "\n")
        self.process.stdin.flush()

    def wait_ready(self) -> int:
        """Block until the next level is open; return how many connections are open."""
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("ready "):
            raise RuntimeError(f"load generator stopped early: {line!r}")
        return int(line.split()[1])

    def next_level(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("next\n")
        self.process.stdin.flush()

    def arrivals(self) -> int:
        """How many ``file.uploaded`` events the connections have received so far."""
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write("count\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line.startswith("arrivals "):
            raise RuntimeError(f"load generator stopped early: {line!r}")
        return int(line.split()[1])

    def finish(self, timeout: float = 120) -> dict[str, Any]:
        """Close every connection and return the job's result."""
        assert self.process.stdin is not None
        try:
            self.process.stdin.write("stop\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            pass
        out, _ = self.process.communicate(timeout=timeout)
        result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return result

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def split_level(level: int, clients: int, index: int) -> int:
    """Client ``index``'s share of ``level`` connections spread over ``clients`` processes."""
    return level // clients + (1 if index < level % clients else 0)


class MultiHold:
    """A ``hold`` job spread over several client processes, each from its own 127.0.0.x.

    One process can hold about 28,000 connections to one server port before it runs out of
    ephemeral ports (``ip_local_port_range``); TIME_WAIT sockets of earlier scenarios use
    some of them too. Each client connects from its own loopback source address, so every
    client has the whole range.
    """

    def __init__(self, job: dict[str, Any], clients: int) -> None:
        levels: list[int] = job["levels"]
        self.sessions = [
            HoldSession(
                {
                    **job,
                    "levels": [split_level(level, clients, index) for level in levels],
                    "source": f"127.0.0.{index + 1}",
                    # All clients together stay under the server's listen backlog.
                    "open_concurrency": max(8, 32 // clients),
                }
            )
            for index in range(clients)
        ]

    def wait_ready(self) -> int:
        """Block until every client opened its share; return the total open."""
        return sum(session.wait_ready() for session in self.sessions)

    def next_level(self) -> None:
        for session in self.sessions:
            session.next_level()

    def finish(self, timeout: float = 120) -> dict[str, Any]:
        """Close every connection; the summed ``held_at_end`` and ``failures``."""
        held = 0
        failures: dict[str, int] = {}
        arrivals: dict[str, list[float]] = {}
        for session in self.sessions:
            result = session.finish(timeout)
            held += result["held_at_end"]
            for key, count in result["failures"].items():
                failures[key] = failures.get(key, 0) + count
            for key, times in result["arrivals"].items():
                arrivals.setdefault(key, []).extend(times)
        return {"held_at_end": held, "failures": failures, "arrivals": arrivals}

    def kill(self) -> None:
        for session in self.sessions:
            session.kill()
