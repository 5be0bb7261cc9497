"""Run scenarios in alternating rounds and write ``bench/results/<date>.md`` plus a chart.

A run is ``--rounds`` rounds (3 by default); each round runs every scenario over every
stack, the stacks in forward order in even rounds and reversed in odd ones, so drift in
the machine's load does not always favour the same stack. Tables show the median of each
figure over the rounds; each target is the median of its per-round ratios
(:mod:`bench.targets`).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from importlib import import_module
from pathlib import Path
from typing import Any

from bench.context import RunOptions, bench_context, machine_facts
from bench.report import render_chart, render_markdown, render_targets
from bench.targets import evaluate, median_rows

RESULTS_DIR = Path(__file__).resolve().parent / "results"
SCENARIOS = ["handshake", "messages", "fanout", "memory"]
#: Scenarios that use the round's shared servers (``BenchContext.shared_server``).
SHARING = {"handshake", "messages"}


def parse_options(default: list[str], argv: list[str] | None = None) -> RunOptions:
    """The command line of ``bench/run`` (and of each ``python -m bench.<scenario>``)."""
    parser = argparse.ArgumentParser(prog="bench/run")
    parser.add_argument("--quick", action="store_true", help="the short run (~6 min)")
    parser.add_argument("--only", nargs="+", choices=SCENARIOS, help="scenarios to run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (median)")
    parser.add_argument(
        "--connections",
        nargs="+",
        type=int,
        metavar="N",
        help="many-connections mode: idle connections held by one floor and one secure daphne "
        "at each N (e.g. 10000 20000); implies --only memory unless --only is given",
    )
    parser.add_argument(
        "--clients",
        type=int,
        default=0,
        help="client processes holding the connections (default: one per 5,000), each from "
        "its own loopback source address 127.0.0.x",
    )
    args = parser.parse_args(argv)
    names = args.only or (["memory"] if args.connections else default)
    return RunOptions(
        quick=args.quick,
        scenarios=names,
        rounds=max(1, args.rounds),
        connections=args.connections or [],
        clients=args.clients,
    )


def run_scenarios(default: list[str], argv: list[str] | None = None) -> Path:
    """Run the scenarios in rounds, write the results and print the targets table."""
    options = parse_options(default, argv)
    # A SIGTERM (timeout, kill) unwinds like Ctrl-C, so every server and Redis is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    begun_run = time.monotonic()
    machine = machine_facts()
    print(f"machine: {machine}", flush=True)
    rounds: list[dict[str, Any]] = []
    with bench_context(options) as ctx:
        for index in range(options.rounds):
            ctx.round = index
            measured: dict[str, Any] = {}
            for name in options.scenarios:
                if name not in SHARING:
                    ctx.end_round()  # idle shared servers would take CPU from this one
                print(f"== round {index + 1}/{options.rounds}: {name}", flush=True)
                begun = time.monotonic()
                measured[name] = import_module(f"bench.{name}").run(ctx)
                print(f"== {name} done in {time.monotonic() - begun:.0f} s", flush=True)
            ctx.end_round()
            rounds.append(measured)
    results: dict[str, Any] = {
        "started": started,
        "quick": options.quick,
        "rounds": rounds,
        "seconds": round(time.monotonic() - begun_run),
        "connections_mode": bool(options.connections),
    }
    for name in options.scenarios:
        results[name] = {"levels": rounds[0][name]["levels"], "rows": median_rows(rounds, name)}
    checks = evaluate(rounds)
    results["targets"] = checks
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = time.strftime("%Y-%m-%d-%H%M", time.gmtime())
    suffix = "-quick" if options.quick else "-connections" if options.connections else ""
    base = RESULTS_DIR / f"{stamp}{suffix}"
    copy = 2
    while base.with_suffix(".json").exists():  # two runs ending in the same minute
        base, copy = RESULTS_DIR / f"{stamp}{suffix}-{copy}", copy + 1
    chart = base.with_suffix(".png")
    has_chart = render_chart(results, chart)
    markdown = render_markdown(results, machine, chart.name if has_chart else None)
    base.with_suffix(".md").write_text(markdown)
    base.with_suffix(".json").write_text(json.dumps({"machine": machine, **results}, indent=1))
    print()
    print("\n".join(render_targets(checks, len(rounds))))
    print(f"\nrun took {results['seconds']} s; wrote {base.with_suffix('.md')}")
    return base.with_suffix(".md")
