"""The Markdown report (tables with ratios against the floor, the targets) and the chart."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from bench.targets import ratio, rows_of, value

Row = dict[str, Any]
_rows = rows_of


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def _table(rows: list[Row], columns: list[tuple[str, str]]) -> list[str]:
    lines = ["| " + " | ".join(title for _, title in columns) + " |"]
    lines.append("|" + "---|" * len(columns))
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row.get(key, "")) for key, _ in columns) + " |")
    return lines


def _floor_of(stack: str) -> str:
    """The floor a stack is compared with: the plain consumer on the same server."""
    return "floor-uvicorn" if stack.endswith("-uvicorn") else "floor"


def _with_ratio(rows: list[Row], field: str) -> list[Row]:
    out = []
    for row in rows:
        floor = value(rows, _floor_of(row["stack"]), row["level"], field)
        out.append({**row, "vs_floor": ratio(float(row[field]), floor)})
    return out


def _target_rows(checks: list[Row]) -> list[Row]:
    rows = []
    for check in checks:
        met = {True: "yes", False: "**no**", None: ""}[check["met"]]
        if not check["measured"]:
            met = "not measured"
        per_round = ", ".join(_fmt(v) for v in check["rounds"] if not math.isnan(v))
        rows.append({**check, "met": met, "per_round": per_round or "n/a"})
    return rows


def render_targets(checks: list[Row], rounds: int) -> list[str]:
    """The targets table (Markdown; also printed at the end of a run)."""
    lines = [f"Targets (issue 12): median over {rounds} alternating round(s)", ""]
    return lines + _table(
        _target_rows(checks),
        [("target", "target"), ("value", "measured (median)"), ("per_round", "per round"),
         ("bound", "target"), ("met", "met"), ("note", "note")],
    )  # fmt: skip


def render_markdown(results: dict[str, Any], machine: dict[str, Any], chart: str | None) -> str:
    """The results page: machine, one table per scenario with ratios, the targets."""
    lines = [f"# secure_ws benchmark — {results['started']}", ""]
    mode = "quick" if results["quick"] else "full"
    if results.get("connections_mode"):
        mode = "many connections"
    rounds = len(results.get("rounds", [])) or 1
    lines.append(
        f"Mode: {mode}; {rounds} alternating round(s) (stacks forward, then reversed), "
        f"{results.get('seconds', '?')} s. Every figure below is the median over the rounds; "
        "x floor compares with the plain consumer on the same server (daphne or uvicorn)."
    )
    lines.append(
        "Machine: {nproc} CPUs ({cpu}), {memory_gib} GiB; Python {python}, Django {django}, "
        "channels {channels}, daphne {daphne}, uvicorn {uvicorn}; load average at start "
        "{loadavg_at_start}. The machine is shared with other engineers running test suites, "
        "so absolute figures are noisy; every ratio compares stacks measured in the same run, "
        "one after the other. Servers and load generators share the same cores.".format(**machine)
    )
    lines.append("")
    if "handshake" in results:
        lines += ["## Handshakes (open + close per worker loop; level = concurrent workers)", ""]
        lines += _table(
            _with_ratio(_rows(results, "handshake"), "rate"),
            [("stack", "stack"), ("level", "workers"), ("rate", "handshakes/s"),
             ("vs_floor", "x floor"), ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms"),
             ("failures", "failures")],
        )  # fmt: skip
        lines.append("")
    if "messages" in results:
        lines += ["## Messages (echo round trips; level = connections)", ""]
        lines += _table(
            _with_ratio(_rows(results, "messages"), "rate"),
            [("stack", "stack"), ("level", "connections"), ("rate", "messages/s"),
             ("vs_floor", "x floor"), ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms"),
             ("errors", "errors")],
        )  # fmt: skip
        lines.append("")
    if "fanout" in results:
        lines += ["## Fan-out (two server processes, Redis; level = subscribers)", ""]
        lines += _table(
            _with_ratio(_rows(results, "fanout"), "rate"),
            [("stack", "stack"), ("level", "subscribers"), ("rate", "deliveries/s"),
             ("vs_floor", "x floor"), ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms"),
             ("delivered", "delivered"), ("expected", "expected")],
        )  # fmt: skip
        lines.append("")
    if "memory" in results:
        lines += ["## Memory (idle authenticated connections on one process)", ""]
        lines += _table(
            _with_ratio(_rows(results, "memory"), "kib_per_conn"),
            [("stack", "stack"), ("level", "connections"), ("open", "open"),
             ("rss_mib", "RSS MiB"), ("kib_per_conn", "KiB/conn"), ("vs_floor", "x floor"),
             ("fds", "open fds"), ("held_at_end", "held at end")],
        )  # fmt: skip
        lines.append("")
    lines += ["## Targets", ""]
    lines += render_targets(results.get("targets", []), rounds)
    if chart:
        lines += ["", f"![chart]({chart})"]
    lines += ["", "Reproduce: `bench/run` (`--quick`: about 6 minutes)."]
    return "\n".join(lines) + "\n"


#: (scenario, field, what the bar is, what the level counts); read at the highest level.
_CHART_PANELS = [
    ("handshake", "rate", "handshakes/s", "workers"),
    ("messages", "rate", "messages/s", "connections"),
    ("fanout", "rate", "fan-out deliveries/s", "subscribers"),
    ("memory", "kib_per_conn", "KiB per idle connection (lower is better)", "connections"),
]


def render_chart(results: dict[str, Any], path: Path) -> bool:
    """One bar panel per scenario: each stack's figure as a multiple of the floor on the same
    server, at the highest level measured, the absolute figure on the bar. ``False``
    without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    for ax, (scenario, field, label, unit) in zip(axes.flat, _CHART_PANELS, strict=True):
        rows = _rows(results, scenario)
        top = max((r["level"] for r in rows), default=0)
        bars = [r for r in _with_ratio(rows, field) if r["level"] == top]
        ax.set_title(f"{label}, {top:,} {unit}" if bars else f"{scenario}: not measured")
        if not bars:
            ax.axis("off")
            continue
        names = [r["stack"] for r in bars]
        ratios = [0.0 if math.isnan(r["vs_floor"]) else r["vs_floor"] for r in bars]
        colours = ["#4c72b0" if n.startswith("secure") else "#999999" for n in names]
        drawn = ax.bar(names, ratios, color=colours)
        ax.bar_label(drawn, labels=[_fmt(float(r[field])) for r in bars], fontsize=8)
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_ylabel("x plain consumer, same server")
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
        ax.grid(True, axis="y", alpha=0.3)
    fig.suptitle(
        "secure_ws (blue) vs a plain Channels consumer (floor) and channels-auth-token-"
        f"middlewares (catm); medians of {len(results.get('rounds', [])) or 1} round(s)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
