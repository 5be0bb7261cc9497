"""Validated message throughput and p50/p99 round trip: ``python -m bench.messages``.

Each client sends an ``echo`` message (a 64-byte text field) and waits for the reply,
in a loop, for a fixed time; the load level is the number of connections. The floor is a
plain ``AsyncJsonWebsocketConsumer`` echo; secure_ws checks size, rate, the envelope and
payload schema and the permission before its handler answers.
"""

from __future__ import annotations

from typing import Any

from bench.context import BenchContext
from bench.measure import run_loadgen, summarise_latencies
from bench.services import COMPARED_STACKS, stacks_named

STACKS = COMPARED_STACKS
QUICK_STACKS = stacks_named("floor", "secure", "floor-uvicorn", "secure-uvicorn")


def run(ctx: BenchContext) -> dict[str, Any]:
    """Measure every stack at every connection count; one server process per stack."""
    levels = [10] if ctx.quick else [1, 10, 50]
    duration = 2.0 if ctx.quick else 6.0
    rows = []
    stacks = ctx.ordered(QUICK_STACKS if ctx.quick else STACKS)
    ctx.start_shared(stacks)
    for spec in stacks:
        label, stack = spec[0], spec[1]
        srv = ctx.shared_server(spec)
        job = ctx.target_job(stack, srv.port)
        for level in levels:
            result = run_loadgen(
                {**job, "kind": "messages", "connections": level, "duration": duration}
            )
            row = {
                "stack": label,
                "level": level,
                "rate": result["count"] / result["elapsed"],
                "count": result["count"],
                "errors": result["errors"],
                **summarise_latencies(result["latencies"]),
            }
            rows.append(row)
            print(
                f"  messages  {label:15s} n={level:<3d} {row['rate']:8.1f}/s "
                f"p50 {row['p50_ms']:7.2f} ms p99 {row['p99_ms']:7.2f} ms "
                f"errors {result['errors']}",
                flush=True,
            )
    return {"levels": levels, "rows": rows}


def main() -> None:
    from bench.runner import run_scenarios

    run_scenarios(["messages"])


if __name__ == "__main__":
    main()
