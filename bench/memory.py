"""RSS per idle authenticated connection: ``python -m bench.memory``.

One server process; client processes open idle connections (answering pings) in steps up
to each level; at each step the server's RSS is read from /proc after the connections
settle. Per-connection memory is (RSS at level - RSS after one warm-up connection) / level.
The last level is held past daphne's 20 s ping before counting the connections still open.

``bench/run --connections 10000 20000`` is the many-connections mode: only the floor and
secure_ws on daphne, at the given levels, connections spread over one client process per
5,000 (``--clients``), each from its own 127.0.0.x, and the server's file-descriptor
limit raised to the hard limit (a server needs one descriptor per connection).
"""

from __future__ import annotations

import math
import resource
import time
from typing import Any

from bench.context import BenchContext
from bench.measure import MultiHold
from bench.services import COMPARED_STACKS, Server, Stack, stacks_named, start_servers

STACKS = COMPARED_STACKS
QUICK_STACKS = stacks_named("floor", "catm", "secure")
CONNECTIONS_STACKS = stacks_named("floor", "secure")
#: Connections one client process opens (well under the ~28,000 ephemeral ports).
PER_CLIENT = 5000
#: Descriptors a server uses besides its connections (Redis, PostgreSQL, logs, epoll).
FD_MARGIN = 200
#: Seconds the last level is held idle: past daphne's and uvicorn's 20 s ping.
HOLD_SECONDS = 25


def plan(ctx: BenchContext) -> tuple[list[int], list[Stack]]:
    """The levels and stacks of this run's mode."""
    if ctx.options.connections:
        return sorted(ctx.options.connections), CONNECTIONS_STACKS
    if ctx.quick:
        return [1000], QUICK_STACKS
    return [1000, 10000], STACKS


def run(ctx: BenchContext) -> dict[str, Any]:
    """Measure every stack at every connection count; one fresh server process per stack."""
    levels, stacks = plan(ctx)
    clients = ctx.options.clients or max(1, math.ceil(levels[-1] / PER_CLIENT))
    rows: list[dict[str, Any]] = []
    _warn_fd_limit(levels[-1])
    ordered = ctx.ordered(stacks)
    # Started at once (start-up is mostly waiting); each is used fresh, then stopped.
    started = start_servers(ordered)
    try:
        for (label, stack, _, _), srv in zip(ordered, started, strict=True):
            rows += _measure(ctx, label, ctx.target_job(stack, srv.port), srv, levels, clients)
            srv.stop()
    finally:
        for srv in started:
            srv.stop()
    return {"levels": levels, "rows": rows}


def _warn_fd_limit(connections: int) -> None:
    """Say so up front when a server cannot get a descriptor per connection here."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    needed = connections + FD_MARGIN
    if hard < needed:
        print(
            f"  memory    warning: the open-file hard limit is {hard}, a server needs about "
            f"{needed} for {connections} connections; expect refusals (raise LimitNOFILE)",
            flush=True,
        )


def _measure(
    ctx: BenchContext,
    label: str,
    job: dict[str, Any],
    srv: Server,
    levels: list[int],
    clients: int,
) -> list[dict[str, Any]]:
    settle = 1.0 if ctx.quick else 3.0
    warm = MultiHold({**job, "levels": [1]}, 1)
    warm.wait_ready()
    time.sleep(settle)
    baseline = srv.rss_kib()
    warm.finish()
    rows = []
    session = MultiHold({**job, "levels": levels}, clients)
    try:
        for level in levels:
            opened = session.wait_ready()
            time.sleep(settle)
            rss = srv.rss_kib()
            row = {
                "stack": label,
                "level": level,
                "open": opened,
                "rss_mib": rss / 1024,
                "baseline_mib": baseline / 1024,
                "kib_per_conn": (rss - baseline) / max(opened, 1),
                "fds": srv.open_fds(),
            }
            rows.append(row)
            print(
                f"  memory    {label:15s} conns={opened:<6d} rss {row['rss_mib']:8.1f} MiB "
                f"{row['kib_per_conn']:6.1f} KiB/conn fds {row['fds']}",
                flush=True,
            )
            if level == levels[-1]:
                # Hold the last level across the servers' ping interval (20 s): the
                # connections must survive being idle, not just being opened.
                time.sleep(0 if ctx.quick else HOLD_SECONDS)
            session.next_level()
        result = session.finish()
    finally:
        session.kill()
    rows[-1]["held_at_end"] = result["held_at_end"]
    rows[-1]["failures"] = result["failures"]
    held, failures = result["held_at_end"], result["failures"]
    print(f"  memory    {label:15s} held at end {held} failures {failures}", flush=True)
    return rows


def main() -> None:
    from bench.runner import run_scenarios

    run_scenarios(["memory"])


if __name__ == "__main__":
    main()
