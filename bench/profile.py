"""Profile one stack's server under load with py-spy: ``python -m bench.profile``.

    python -m bench.profile                      # secure on daphne, handshake load
    python -m bench.profile --stack floor --server uvicorn --scenario messages

starts the stack, drives it with the load generator (8 handshake workers, or 10 echo
connections) and samples the server process with ``py-spy record`` (a bench-only
dependency, ``requirements/bench.txt``). Writes ``bench/results/<date>-profile.md``: the
share of samples by component (secure_ws, daphne/Twisted, redis-py, Django, JWT, ...),
and the hottest functions, inclusive and own. The raw collapsed stacks stay in the log
directory.
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.context import RunOptions, bench_context
from bench.measure import run_loadgen
from bench.services import LOG_DIR, ROOT, servers

RESULTS_DIR = Path(__file__).resolve().parent / "results"

#: Component -> the top-level packages (first path part in py-spy's frames) it covers.
COMPONENTS: dict[str, tuple[str, ...]] = {
    "secure_ws (this project)": ("secure_ws",),
    "daphne + Twisted + autobahn": ("daphne", "twisted", "autobahn", "txaio", "zope"),
    "uvicorn + websockets": ("uvicorn", "websockets", "httptools", "h11", "uvloop"),
    "channels": ("channels",),
    "channels-redis": ("channels_redis",),
    "redis-py": ("redis",),
    "asgiref (sync/async hops)": ("asgiref",),
    "Django (ORM, settings, signals)": ("django",),
    "PyJWT + simplejwt": ("jwt", "rest_framework_simplejwt"),
    "channels-auth-token-middlewares": ("channels_auth_token_middlewares",),
    "psycopg (PostgreSQL)": ("psycopg", "psycopg_pool"),
    "pydantic": ("pydantic", "pydantic_core"),
    "bench apps": ("bench",),
    "asyncio + selectors (stdlib)": ("asyncio", "selectors"),
    "concurrent.futures threads (stdlib)": ("concurrent", "threading"),
    "logging (stdlib)": ("logging",),
}
_PACKAGE_TO_COMPONENT = {pkg: name for name, pkgs in COMPONENTS.items() for pkg in pkgs}
OTHER = "other (stdlib, interpreter)"


def component_of(frame: str) -> str:
    """The component a py-spy frame ``func (path/to/file.py:line)`` belongs to."""
    _, _, location = frame.rpartition(" (")
    path = location.split(":", 1)[0]
    parts = path.replace("\\", "/").split("/")
    for part in parts[:-1] if len(parts) > 1 else parts:
        if part in _PACKAGE_TO_COMPONENT:
            return _PACKAGE_TO_COMPONENT[part]
        if part not in {"", ".", "site-packages", "dist-packages", "lib"}:
            break
    return OTHER


@dataclass
class Profile:
    """Sample counts from py-spy's collapsed (raw) output."""

    samples: int
    inclusive: collections.Counter[str]
    own: collections.Counter[str]
    by_component: collections.Counter[str]
    attributed: collections.Counter[str]


def parse(collapsed: Path) -> Profile:
    """Count inclusive and own samples per frame and per component.

    *inclusive*: samples with the frame (or any frame of the component) on the stack.
    *attributed*: each sample goes to the innermost frame that is not stdlib, so the
    attributed shares add up to 100 % (a socket write called by redis-py is redis-py's).
    """
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    by_component: collections.Counter[str] = collections.Counter()
    attributed: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if f and not f.startswith("process ")]
        frames = [f for f in frames if not f.startswith("thread ")]
        if not frames:
            continue
        samples += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
        components = [component_of(f) for f in frames]
        for name in set(components):
            by_component[name] += count
        library = [c for c in components if c != OTHER and "(stdlib)" not in c]
        attributed[library[-1] if library else components[-1]] += count
    return Profile(samples, inclusive, own, by_component, attributed)


def _pct(count: int, total: int) -> str:
    return f"{100 * count / total:.1f} %" if total else "n/a"


def render(profile: Profile, facts: dict[str, Any], top: int = 25) -> str:
    """The Markdown page: facts, the component table, the hottest functions."""
    total = profile.samples
    lines = [f"# Profile: {facts['stack']} on {facts['server']}, {facts['scenario']} load", ""]
    lines += [f"* {key}: {value}" for key, value in facts.items()]
    lines += ["", "## By component", ""]
    lines += [
        "*inclusive*: share of samples with any frame of the component on the stack (a sample",
        "counts for every component on it); *attributed*: each sample counted once, for the",
        "innermost non-stdlib frame (adds up to 100 %).",
        "",
        "| component | inclusive | attributed |",
        "|---|---|---|",
    ]
    # "other" is on nearly every stack (runpy, thread bootstrap): last, not first.
    names = sorted(profile.by_component, key=lambda n: (n == OTHER, -profile.by_component[n]))
    for name in names:
        inc, att = profile.by_component[name], profile.attributed.get(name, 0)
        lines.append(f"| {name} | {_pct(inc, total)} | {_pct(att, total)} |")
    ours = [(f, c) for f, c in profile.inclusive.most_common() if "secure_ws/" in f][:top]
    lines += ["", "## secure_ws functions (inclusive)", "", "| share | function |", "|---|---|"]
    lines += [f"| {_pct(c, total)} | `{f}` |" for f, c in ours] or ["| - | (none) |"]
    lines += ["", "## Hottest functions (own time)", "", "| share | function |", "|---|---|"]
    lines += [f"| {_pct(c, total)} | `{f}` |" for f, c in profile.own.most_common(top)]
    return "\n".join(lines) + "\n"


def _commit() -> str:
    """The last commit that changed ``secure_ws/`` (the code profiled), and whether it is dirty."""
    log = subprocess.run(
        ["git", "log", "-1", "--format=%h %cd", "--date=short", "--", "secure_ws"],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "secure_ws"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    return (log.stdout.strip() or "unknown") + (" + uncommitted changes" if dirty.stdout else "")


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(prog="python -m bench.profile")
    parser.add_argument("--stack", default="secure", choices=["floor", "diy", "catm", "secure"])
    parser.add_argument("--server", default="daphne", choices=["daphne", "uvicorn"])
    parser.add_argument("--scenario", default="handshake", choices=["handshake", "messages"])
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    args = parser.parse_args(argv)
    RESULTS_DIR.mkdir(exist_ok=True)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    collapsed = LOG_DIR / f"profile-{args.stack}-{args.server}-{args.scenario}.collapsed"
    load_result: dict[str, Any] = {}
    with (
        bench_context(RunOptions()) as ctx,
        servers((args.stack, args.server)) as (srv,),
    ):
        job = ctx.target_job(args.stack, srv.port)
        warm = {"concurrency": 4, "duration": 10.0, "max_count": 2 * len(ctx.tokens)}
        run_loadgen({**job, "kind": "handshake", **warm})  # every user once, as the bench does
        if args.scenario == "handshake":
            job.update(kind="handshake", concurrency=8, duration=args.seconds + 2)
        else:
            job.update(kind="messages", connections=10, duration=args.seconds + 2)
        load = threading.Thread(target=lambda: load_result.update(run_loadgen(job)))
        load.start()
        time.sleep(1.0)  # the load generator's start-up and the messages warm-up
        spy = subprocess.run(
            [str(Path(sys.executable).parent / "py-spy"), "record", "-p", str(srv.process.pid),
             "-d", str(args.seconds), "-r", str(args.rate), "-f", "raw", "-o", str(collapsed),
             "--nonblocking"],
            capture_output=True, text=True, timeout=args.seconds + 60,
        )  # fmt: skip
        load.join()
    if spy.returncode != 0:
        raise SystemExit(f"py-spy failed ({spy.returncode}): {spy.stderr[-2000:]}")
    rate = load_result.get("count", 0) / max(load_result.get("elapsed", 1.0), 1e-9)
    unit = "handshakes/s" if args.scenario == "handshake" else "messages/s"
    facts = {
        "stack": args.stack,
        "server": args.server,
        "scenario": args.scenario,
        "load": "8 handshake workers" if args.scenario == "handshake" else "10 echo connections",
        "throughput during the profile": f"{rate:,.0f} {unit}",
        "sampling": f"py-spy record --nonblocking, {args.rate} Hz, {args.seconds} s",
        "secure_ws code": f"last changed in commit {_commit()}",
        "taken": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load average at the end": ", ".join(f"{x:.2f}" for x in os.getloadavg()),
    }
    profile = parse(collapsed)
    facts["samples"] = profile.samples
    page = render(profile, facts)
    stamp = time.strftime("%Y-%m-%d-%H%M", time.gmtime())
    out = RESULTS_DIR / f"{stamp}-profile.md"
    out.write_text(page)
    print(page)
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    main()
