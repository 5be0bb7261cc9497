"""Run scenarios in one benchmark run and write ``bench/results/<date>.md`` plus a chart."""

from __future__ import annotations

import argparse
import json
import time
from importlib import import_module
from pathlib import Path

from bench.context import bench_context, machine_facts
from bench.report import evaluate_targets, render_chart, render_markdown

RESULTS_DIR = Path(__file__).resolve().parent / "results"
SCENARIOS = ["handshake", "messages", "fanout", "memory"]


def run_scenarios(default: list[str], argv: list[str] | None = None) -> Path:
    """Parse ``--quick`` / ``--only``, run the scenarios, write and print the results."""
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--only", nargs="+", choices=SCENARIOS, help="scenarios to run")
    args = parser.parse_args(argv)
    names = args.only or default
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    results: dict[str, object] = {"started": started, "quick": args.quick}
    machine = machine_facts()
    print(f"machine: {machine}", flush=True)
    with bench_context(args.quick) as ctx:
        for name in names:
            print(f"== {name}", flush=True)
            begun = time.monotonic()
            results[name] = import_module(f"bench.{name}").run(ctx)
            print(f"== {name} done in {time.monotonic() - begun:.0f} s", flush=True)
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = time.strftime("%Y-%m-%d-%H%M", time.gmtime())
    suffix = "-quick" if args.quick else ""
    base = RESULTS_DIR / f"{stamp}{suffix}"
    chart = base.with_suffix(".png")
    has_chart = render_chart(results, chart)
    markdown = render_markdown(results, machine, chart.name if has_chart else None)
    base.with_suffix(".md").write_text(markdown)
    base.with_suffix(".json").write_text(json.dumps({"machine": machine, **results}, indent=1))
    print()
    for check in evaluate_targets(results):
        status = "MET " if check["met"] else "MISS"
        print(f"{status} {check['target']}: {check['value']:.3f} (target {check['bound']})")
    print(f"\nwrote {base.with_suffix('.md')}")
    return base.with_suffix(".md")
