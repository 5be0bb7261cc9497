"""Profile one stack's server under load with py-spy: ``python -m bench.profile``.

``python -m bench.profile secure handshake`` starts the stack on daphne, drives it with the
handshake (or ``messages``) load generator and records a py-spy profile of the server
process to ``bench/results/profile-<stack>-<scenario>.txt`` (collapsed stacks summarised
into the top self and cumulative frames). py-spy is a bench-only dependency.
"""

from __future__ import annotations

import collections
import subprocess
import sys
import threading
from pathlib import Path

from bench.context import bench_context
from bench.measure import run_loadgen
from bench.services import LOG_DIR, servers

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def summarise(collapsed: Path, top: int = 40) -> str:
    """Turn py-spy's collapsed stacks into the hottest own and cumulative frames."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        samples += count
        frames = stack.split(";")
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count
    lines = [f"samples: {samples}", "", "own time:"]
    lines += [f"{100 * c / samples:5.1f}%  {f}" for f, c in own.most_common(top)]
    lines += ["", "cumulative:"]
    lines += [f"{100 * c / samples:5.1f}%  {f}" for f, c in total.most_common(top)]
    return "\n".join(lines)


def main() -> None:
    stack = sys.argv[1] if len(sys.argv) > 1 else "secure"
    scenario = sys.argv[2] if len(sys.argv) > 2 else "handshake"
    seconds = 12
    RESULTS_DIR.mkdir(exist_ok=True)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    collapsed = LOG_DIR / f"profile-{stack}-{scenario}.collapsed"
    with bench_context(quick=True) as ctx, servers((stack, "daphne")) as (srv,):
        job = ctx.target_job(stack, srv.port)
        if scenario == "handshake":
            job.update(kind="handshake", concurrency=8, duration=seconds + 2)
        else:
            job.update(kind="messages", connections=10, duration=seconds + 2)
        spy = subprocess.Popen(
            [str(Path(sys.executable).parent / "py-spy"), "record", "-p", str(srv.process.pid),
             "-d", str(seconds), "-r", "200", "-f", "raw", "-o", str(collapsed), "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        load = threading.Thread(target=run_loadgen, args=(job,))
        load.start()
        spy.wait(timeout=seconds + 60)
        load.join()
    summary = summarise(collapsed)
    (RESULTS_DIR / f"profile-{stack}-{scenario}.txt").write_text(summary + "\n")
    print(summary)


if __name__ == "__main__":
    main()
