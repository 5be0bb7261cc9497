"""Soak test: ``python -m bench.soak [--minutes 30]`` (not run in CI).

Runs mixed traffic against one secure_ws daphne process for ``--minutes`` and samples the
server's RSS and open file descriptors every minute; both must stay flat. The traffic:
``--idle`` idle subscribed connections, ``--active`` connections sending ``echo`` ten times
a second each, two workers churning handshakes (open, close, twice a second each), and one
file event published to the idle subscribers every ten seconds. Everything is on 127.0.0.1
and stops by itself. Writes ``bench/results/soak-<date>.md``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench.context import RunOptions, bench_context, machine_facts
from bench.measure import HoldSession, run_loadgen
from bench.services import FOLDER, ROOT, servers

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def _publish_every(stop: threading.Event, seconds: float) -> None:
    while not stop.wait(seconds):
        subprocess.run(
            [sys.executable, "-m", "bench.publisher", "secure", FOLDER, "1"],
            cwd=ROOT,
            capture_output=True,
            timeout=60,
            check=False,
        )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.soak")
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--idle", type=int, default=1000)
    parser.add_argument("--active", type=int, default=20)
    args = parser.parse_args()
    duration = args.minutes * 60
    machine = machine_facts()
    samples: list[tuple[float, float, int]] = []
    with bench_context(RunOptions()) as ctx, servers(("secure", "daphne")) as (srv,):
        files_job = ctx.target_job("secure", srv.port, "/ws/files/")
        echo_job = ctx.target_job("secure", srv.port)
        idle = HoldSession({**files_job, "levels": [args.idle], "subscribe": FOLDER,
                            "step_timeout": duration + 120})  # fmt: skip
        idle.wait_ready()
        stop = threading.Event()
        loads = [
            threading.Thread(
                target=run_loadgen,
                args=({**echo_job, "kind": "messages", "connections": args.active,
                       "duration": duration, "interval": 0.1, "warmup": 0}, duration + 120),
            ),
            threading.Thread(
                target=run_loadgen,
                args=({**echo_job, "kind": "handshake", "concurrency": 2,
                       "duration": duration, "interval": 0.5}, duration + 120),
            ),
            threading.Thread(target=_publish_every, args=(stop, 10.0)),
        ]  # fmt: skip
        for thread in loads:
            thread.start()
        started = time.monotonic()
        while True:
            elapsed = time.monotonic() - started
            samples.append((elapsed / 60, srv.rss_kib() / 1024, srv.open_fds()))
            print(
                f"  minute {elapsed / 60:5.1f}: rss {samples[-1][1]:8.1f} MiB, fds {samples[-1][2]}"
            )
            if elapsed >= duration:
                break
            time.sleep(min(60.0, duration - elapsed + 0.5))
        stop.set()
        for thread in loads:
            thread.join(timeout=180)
        result = idle.finish()
    lines = [
        f"# secure_ws soak — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        f"{args.minutes:g} minutes on daphne: {args.idle} idle subscribers, {args.active} "
        "active echo clients at 10 msg/s, 2 handshake churners at 2/s, one file event every "
        f"10 s. Machine: {machine['nproc']} CPUs ({machine['cpu']}). Idle connections held at "
        f"the end: {result['held_at_end']} of {args.idle}.",
        "",
        "| minute | RSS MiB | open fds |",
        "|---|---|---|",
        *(f"| {m:.1f} | {rss:.1f} | {fds} |" for m, rss, fds in samples),
    ]
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"soak-{time.strftime('%Y-%m-%d-%H%M', time.gmtime())}.md"
    path.write_text("\n".join(lines) + "\n")
    growth = samples[-1][1] - samples[1][1] if len(samples) > 2 else 0.0
    print(f"RSS growth after the first minute: {growth:+.1f} MiB; wrote {path}")


if __name__ == "__main__":
    main()
