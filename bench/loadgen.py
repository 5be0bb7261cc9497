"""Load generator process: ``python -m bench.loadgen`` reads a JSON job on stdin.

It runs in its own process so that the client's CPU is never charged to the server, talks
to 127.0.0.1 only, and every loop is bounded by a count and a deadline. Results are one
JSON object on the last stdout line; progress lines (``ready ...``) come before it, and a
job that holds connections waits for a line on stdin (``next`` / ``stop``) between steps.

Jobs:
* ``handshake``: ``concurrency`` workers open and close connections for ``duration`` s.
* ``messages``: ``connections`` clients send ``echo`` and wait for the reply, ``duration`` s.
* ``hold``: open connections up to each of ``levels`` (idle, answering pings), report
  ``ready N`` and wait for ``next``; with ``subscribe`` each connection subscribes to a
  folder and records when each ``file.uploaded`` event arrives (``count`` answers
  ``arrivals N`` so far).
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from collections.abc import Callable
from typing import Any

from bench.wsclient import HandshakeRefused, RawWebSocket, Target

Job = dict[str, Any]


def raise_fd_limit() -> int:
    """Raise this process's open-file limit to its hard limit; return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def _target(job: Job, port: int | None = None) -> Target:
    return Target(
        port=port or job["port"], path=job["path"], auth=job["auth"], source=job.get("source")
    )


def _token(job: Job, index: int) -> str | None:
    tokens = job.get("tokens") or []
    return tokens[index % len(tokens)] if tokens else None


async def run_handshakes(job: Job) -> dict[str, Any]:
    """Open and close connections as fast as ``concurrency`` workers can."""
    target = _target(job)
    latencies: list[float] = []
    failures: dict[str, int] = {}
    deadline = time.perf_counter() + job["duration"]
    max_count = job.get("max_count", 10**9)

    async def worker(worker_id: int) -> None:
        index = worker_id
        while time.perf_counter() < deadline and len(latencies) < max_count:
            start = time.perf_counter()
            try:
                async with asyncio.timeout(10):
                    ws = await RawWebSocket.connect(target, _token(job, index))
                latencies.append(time.perf_counter() - start)
                await ws.close()
            except HandshakeRefused as exc:
                failures[str(exc.status)] = failures.get(str(exc.status), 0) + 1
            except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
                failures[type(exc).__name__] = failures.get(type(exc).__name__, 0) + 1
            index += job["concurrency"]
            if job.get("interval"):
                await asyncio.sleep(job["interval"])

    started = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(job["concurrency"])))
    elapsed = time.perf_counter() - started
    return {
        "count": len(latencies),
        "elapsed": elapsed,
        "latencies": latencies,
        "failures": failures,
    }


async def run_messages(job: Job) -> dict[str, Any]:
    """Request/response ``echo`` traffic on ``connections`` open connections."""
    target = _target(job)
    sockets = [
        await RawWebSocket.connect(target, _token(job, i)) for i in range(job["connections"])
    ]
    text = "x" * job.get("payload_bytes", 64)
    latencies: list[float] = []
    errors = 0
    warmup_until = time.perf_counter() + job.get("warmup", 1.0)
    deadline = warmup_until + job["duration"]

    async def client(ws: RawWebSocket, client_index: int) -> None:
        nonlocal errors
        sequence = 0
        while time.perf_counter() < deadline:
            sequence += 1
            frame = {"type": "echo", "id": f"{client_index}-{sequence}", "payload": {"text": text}}
            start = time.perf_counter()
            ws.send_text(json.dumps(frame, separators=(",", ":")))
            async with asyncio.timeout(10):
                reply = await ws.recv()
            end = time.perf_counter()
            if reply is None or '"echo"' not in reply:
                errors += 1
                if reply is None:
                    return
                continue
            if start >= warmup_until:
                latencies.append(end - start)
            if job.get("interval"):
                await asyncio.sleep(job["interval"])

    await asyncio.gather(*(client(ws, i) for i, ws in enumerate(sockets)))
    elapsed = job["duration"]
    await asyncio.gather(*(ws.close() for ws in sockets))
    return {"count": len(latencies), "elapsed": elapsed, "latencies": latencies, "errors": errors}


async def _open_many(
    job: Job,
    count: int,
    start_index: int,
    on_open: Callable[[RawWebSocket], None],
    failures: dict[str, int],
) -> None:
    ports: list[int] = job.get("ports") or [job["port"]]
    # Under daphne's listen backlog (Twisted's default, 50): more connects in flight than
    # that overflow it on a busy machine and come back as resets, not as refusals.
    semaphore = asyncio.Semaphore(job.get("open_concurrency", 32))
    subscribe = job.get("subscribe")

    async def open_one(index: int) -> None:
        async with semaphore:
            try:
                async with asyncio.timeout(30):
                    ws = await RawWebSocket.connect(
                        _target(job, ports[index % len(ports)]), _token(job, index)
                    )
                    if subscribe:
                        ws.send_text(
                            json.dumps({"type": "subscribe", "payload": {"folder": subscribe}})
                        )
                        while True:
                            reply = await ws.recv()
                            if reply is None:
                                raise ConnectionError("closed before ack")
                            if '"error"' in reply:
                                raise ConnectionError("subscribe refused")
                            if '"ack"' in reply or '"subscribed"' in reply:
                                break
                on_open(ws)
            except HandshakeRefused as exc:
                failures[str(exc.status)] = failures.get(str(exc.status), 0) + 1
            except (OSError, asyncio.IncompleteReadError, TimeoutError, ConnectionError) as exc:
                failures[type(exc).__name__] = failures.get(type(exc).__name__, 0) + 1

    await asyncio.gather(*(open_one(i) for i in range(start_index, start_index + count)))


async def run_hold(job: Job) -> dict[str, Any]:
    """Hold idle connections at each level; with ``subscribe``, record event arrivals."""
    opened: list[RawWebSocket] = []
    failures: dict[str, int] = {}
    arrivals: dict[str, list[float]] = {}
    readers: list[asyncio.Task[None]] = []
    closed_early = 0
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)

    async def read_events(ws: RawWebSocket) -> None:
        nonlocal closed_early
        try:
            while True:
                text = await ws.recv()
                if text is None:
                    closed_early += 1
                    return
                if '"file.uploaded"' in text:
                    now = time.time()
                    file_id = json.loads(text)["payload"]["file_id"]
                    arrivals.setdefault(file_id, []).append(now)
        except (OSError, asyncio.IncompleteReadError):
            closed_early += 1

    def on_open(ws: RawWebSocket) -> None:
        # Read (and answer pings) from the start: opening thousands takes longer than the
        # servers' ping timeout (30 s) on a busy machine.
        opened.append(ws)
        readers.append(asyncio.create_task(read_events(ws)))

    levels: list[int] = job["levels"]
    level_results = []
    for level in levels:
        before = len(opened)
        started = time.perf_counter()
        await _open_many(job, level - before - sum(failures.values()), before, on_open, failures)
        still_open = len(opened) - closed_early
        level_results.append(
            {"level": level, "open": still_open, "open_seconds": time.perf_counter() - started}
        )
        print(f"ready {still_open}", flush=True)
        while True:
            line = await asyncio.wait_for(stdin.readline(), job.get("step_timeout", 600))
            command = line.strip()
            if command != b"count":
                break
            print(f"arrivals {sum(len(times) for times in arrivals.values())}", flush=True)
        if command != b"next":
            break
    held = len(opened) - closed_early
    await asyncio.gather(*(ws.close(deadline=2) for ws in opened), return_exceptions=True)
    for task in readers:
        task.cancel()
    return {
        "levels": level_results,
        "held_at_end": held,
        "failures": failures,
        "arrivals": arrivals,
    }


JOBS = {"handshake": run_handshakes, "messages": run_messages, "hold": run_hold}


def main() -> None:
    job: Job = json.loads(sys.stdin.readline())
    raise_fd_limit()
    result = asyncio.run(JOBS[job["kind"]](job))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
