"""Fan-out of file events through Redis: ``python -m bench.fanout``.

Subscribers are spread over two server processes of the same stack; a third process
publishes events back to back through the channel layer (the bench's Redis). Delivery
latency is each subscriber's arrival time minus the publish time (one clock: loopback);
throughput is deliveries divided by the time from the first publish to the last arrival.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

from bench.context import BenchContext
from bench.measure import HoldSession, summarise_latencies
from bench.services import COMPARED_STACKS, FOLDER, ROOT, Server, stacks_named, start_servers

STACKS = COMPARED_STACKS
QUICK_STACKS = stacks_named("floor", "secure")


def _publish(stack: str, count: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.publisher", stack, FOLDER, str(count)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    sent: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return sent


#: Collection ends when every delivery arrived, when none arrived for this long, or at
#: :data:`MAX_WAIT` (the slowest stack must get its deliveries in, or its rate is truncated).
QUIET_SECONDS = 3.0
MAX_WAIT = 120.0


def _wait_for_deliveries(session: HoldSession, expected: int) -> None:
    deadline = time.monotonic() + MAX_WAIT
    seen, last_change = -1, time.monotonic()
    while time.monotonic() < deadline:
        arrived = session.arrivals()
        if arrived >= expected:
            return
        if arrived != seen:
            seen, last_change = arrived, time.monotonic()
        elif time.monotonic() - last_change > QUIET_SECONDS:
            return
        time.sleep(0.2)


def _measure(
    stack: str, ports: list[int], ctx: BenchContext, level: int, events: int
) -> dict[str, Any]:
    job = {
        **ctx.target_job(stack, ports[0], "/ws/files/"),
        "ports": ports,
        "levels": [level],
        "subscribe": FOLDER,
    }
    session = HoldSession(job)
    try:
        opened = session.wait_ready()
        time.sleep(0.5)
        sent = _publish(stack, events)
        expected = opened * events
        _wait_for_deliveries(session, expected)
        result = session.finish()
    finally:
        session.kill()
    latencies = []
    last = 0.0
    for file_id, times in result["arrivals"].items():
        t0 = sent.get(file_id)
        if t0 is None:
            continue
        latencies.extend(t - t0 for t in times)
        last = max(last, *times)
    delivered = len(latencies)
    span = last - min(sent.values()) if delivered else float("nan")
    return {
        "subscribers": opened,
        "events": events,
        "delivered": delivered,
        "expected": expected,
        "rate": delivered / span if delivered else 0.0,
        "failures": result["failures"],
        **summarise_latencies(latencies),
    }


def _measure_pair(
    ctx: BenchContext, label: str, stack: str, pair: list[Server], level: int
) -> dict[str, Any]:
    # About 20,000 deliveries per measurement at most: enough to time, bounded in time.
    events = 5 if ctx.quick else max(4, min(20, 20000 // level))
    row: dict[str, Any] = {"stack": label, "level": level}
    row.update(_measure(stack, [s.port for s in pair], ctx, level, events))
    for srv in pair:
        srv.stop()
    print(
        f"  fanout    {label:15s} subs={level:<5d} {row['rate']:9.1f} deliveries/s "
        f"p50 {row['p50_ms']:7.2f} ms p99 {row['p99_ms']:7.2f} ms "
        f"delivered {row['delivered']}/{row['expected']} failures {row['failures']}",
        flush=True,
    )
    return row


def run(ctx: BenchContext) -> dict[str, Any]:
    """Measure every stack at every subscriber count over two server processes."""
    levels = [1000] if ctx.quick else [100, 1000, 5000]
    rows = []
    # Every measurement gets a fresh pair of servers. A quick run starts all its pairs at
    # once (start-up is mostly waiting); a full run, with up to 18 pairs, one at a time.
    plan = [(spec, level) for spec in ctx.ordered(QUICK_STACKS if ctx.quick else STACKS)
            for level in levels]  # fmt: skip
    batches = [plan] if ctx.quick else [[item] for item in plan]
    for batch in batches:
        started = start_servers([spec for spec, _ in batch for _ in range(2)])
        try:
            for index, ((label, stack, _, _), level) in enumerate(batch):
                pair = started[2 * index : 2 * index + 2]
                rows.append(_measure_pair(ctx, label, stack, pair, level))
        finally:
            for srv in started:
                srv.stop()
    return {"levels": levels, "rows": rows}


def main() -> None:
    from bench.runner import run_scenarios

    run_scenarios(["fanout"])


if __name__ == "__main__":
    main()
