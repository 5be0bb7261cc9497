"""Handshakes per second and p50/p99 handshake latency: ``python -m bench.handshake``.

Each worker opens a connection (TCP connect, upgrade, the whole gate, the consumer's
accept) and closes it again, in a loop, for a fixed time; the load level is the number of
concurrent workers. Stacks: the plain consumer (floor), the do-it-yourself JWT stack,
channels-auth-token-middlewares' SimpleJWT middleware (catm),
secure_ws with auditing on and off on daphne, and the plain consumer and secure_ws on
uvicorn.
"""

from __future__ import annotations

from typing import Any

from bench.context import BenchContext
from bench.measure import run_loadgen, summarise_latencies
from bench.services import COMPARED_STACKS, NOAUDIT_STACK
from bench.targets import P99_WORKERS

#: (label, stack, server, extra environment)
#: The compared stacks plus secure_ws with auditing off (the audit on/off ratio).
STACKS = [*COMPARED_STACKS, NOAUDIT_STACK]


def run(ctx: BenchContext) -> dict[str, Any]:
    """Measure every stack at every concurrency level; one server process per stack."""
    levels = [P99_WORKERS] if ctx.quick else [1, P99_WORKERS, 32]
    duration = 2.5 if ctx.quick else 6.0
    rows = []
    stacks = ctx.ordered(STACKS)
    ctx.start_shared(stacks)
    for spec in stacks:
        label, stack = spec[0], spec[1]
        srv = ctx.shared_server(spec)
        job = ctx.target_job(stack, srv.port)
        # Warm-up: one handshake per seeded user at least, so the measurement sees the
        # user-state cache warm, as a server that has been up for a while does.
        warm = {"concurrency": 4, "duration": 10.0, "max_count": 2 * len(ctx.tokens)}
        run_loadgen({**job, "kind": "handshake", **warm})
        for level in levels:
            result = run_loadgen(
                {**job, "kind": "handshake", "concurrency": level, "duration": duration}
            )
            row = {
                "stack": label,
                "level": level,
                "rate": result["count"] / result["elapsed"],
                "count": result["count"],
                "failures": result["failures"],
                **summarise_latencies(result["latencies"]),
            }
            rows.append(row)
            print(
                f"  handshake {label:15s} c={level:<3d} {row['rate']:8.1f}/s "
                f"p50 {row['p50_ms']:7.2f} ms p99 {row['p99_ms']:7.2f} ms "
                f"failures {result['failures']}",
                flush=True,
            )
    return {"levels": levels, "rows": rows}


def main() -> None:
    from bench.runner import run_scenarios

    run_scenarios(["handshake"])


if __name__ == "__main__":
    main()
