"""RSS per idle authenticated connection: ``python -m bench.memory``.

One server process; a client process opens idle connections (answering pings) in steps up
to each level; at each step the server's RSS is read from /proc after the connections
settle. Per-connection memory is (RSS at level - RSS after one warm-up connection) / level.
The last level (10,000) also proves one process holds that many authenticated connections.
"""

from __future__ import annotations

import time
from typing import Any

from bench.context import BenchContext
from bench.measure import HoldSession
from bench.services import COMPARED_STACKS, servers

STACKS = COMPARED_STACKS


def run(ctx: BenchContext) -> dict[str, Any]:
    """Measure every stack at every connection count; one server process per stack."""
    levels = [200, 1000] if ctx.quick else [1000, 5000, 10000]
    settle = 1.0 if ctx.quick else 3.0
    rows = []
    for label, stack, server, env in STACKS:
        with servers((stack, server), env=env) as (srv,):
            job = ctx.target_job(stack, srv.port)
            warm = HoldSession({**job, "levels": [1]})
            warm.wait_ready()
            time.sleep(settle)
            baseline = srv.rss_kib()
            warm.finish()
            session = HoldSession({**job, "levels": levels})
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
                        # Hold the last level across daphne's ping interval (20 s): the
                        # connections must survive being idle, not just being opened.
                        time.sleep(0 if ctx.quick else 25)
                    session.next_level()
                result = session.finish()
            finally:
                session.kill()
            rows[-1]["held_at_end"] = result["held_at_end"]
            rows[-1]["failures"] = result["failures"]
            held, failures = result["held_at_end"], result["failures"]
            print(f"  memory    {label:15s} held at end {held} failures {failures}")
    return {"levels": levels, "rows": rows}


def main() -> None:
    from bench.runner import run_scenarios

    run_scenarios(["memory"])


if __name__ == "__main__":
    main()
