"""Ratios against the floor, the targets, the Markdown report and the chart."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

Row = dict[str, Any]


def _rows(results: dict[str, Any], scenario: str) -> list[Row]:
    rows: list[Row] = results.get(scenario, {}).get("rows", [])
    return rows


def _value(rows: list[Row], stack: str, level: int, field: str) -> float:
    for row in rows:
        if row["stack"] == stack and row["level"] == level:
            return float(row[field])
    return float("nan")


def _peak(rows: list[Row], stack: str, field: str = "rate") -> float:
    values = [float(r[field]) for r in rows if r["stack"] == stack]
    return max(values) if values else float("nan")


def _ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(a) and not math.isnan(b) else float("nan")


def evaluate_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target of issue 8 as (name, measured ratio, bound, met)."""
    checks: list[dict[str, Any]] = []

    def check(name: str, value: float, bound: float, higher_is_better: bool = True) -> None:
        met = (value >= bound) if higher_is_better else (value <= bound)
        checks.append(
            {
                "target": name,
                "value": value,
                "bound": f"{'>=' if higher_is_better else '<='} {bound}",
                "met": bool(met) and not math.isnan(value),
            }
        )

    hs = _rows(results, "handshake")
    if hs:
        check(
            "handshake/s secure vs floor (peak)",
            _ratio(_peak(hs, "secure"), _peak(hs, "floor")),
            0.8,
        )
        check(
            "handshake/s secure vs DIY (peak)", _ratio(_peak(hs, "secure"), _peak(hs, "diy")), 1.0
        )
        check(
            "handshake/s secure vs CATM SimpleJWT middleware (peak)",
            _ratio(_peak(hs, "secure"), _peak(hs, "catm")),
            1.5,
        )
        check(
            "handshake/s audit on vs off (peak)",
            _ratio(_peak(hs, "secure"), _peak(hs, "secure-noaudit")),
            0.95,
        )
    msg = _rows(results, "messages")
    if msg:
        check(
            "messages/s secure vs floor (peak)",
            _ratio(_peak(msg, "secure"), _peak(msg, "floor")),
            0.9,
        )
    fan = _rows(results, "fanout")
    if fan:
        for level in results["fanout"]["levels"]:
            if level < 1000:
                continue
            check(
                f"fan-out deliveries/s secure vs floor ({level} subs)",
                _ratio(_value(fan, "secure", level, "rate"), _value(fan, "floor", level, "rate")),
                0.9,
            )
            check(
                f"fan-out p99 secure vs floor ({level} subs)",
                _ratio(
                    _value(fan, "secure", level, "p99_ms"), _value(fan, "floor", level, "p99_ms")
                ),
                1.1,
                higher_is_better=False,
            )
    mem = _rows(results, "memory")
    if mem:
        levels = results["memory"]["levels"]
        for level in levels:
            check(
                f"memory/conn secure vs floor ({level} conns)",
                _ratio(
                    _value(mem, "secure", level, "kib_per_conn"),
                    _value(mem, "floor", level, "kib_per_conn"),
                ),
                1.2,
                higher_is_better=False,
            )
        top = levels[-1]
        held = next(
            (r.get("held_at_end", 0) for r in mem if r["stack"] == "secure" and r["level"] == top),
            0,
        )
        check(f"connections held by one daphne (of {top})", float(held) / top, 1.0)
    return checks


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


def _with_ratio(rows: list[Row], field: str) -> list[Row]:
    out = []
    for row in rows:
        floor = _value(rows, "floor", row["level"], field)
        out.append({**row, "vs_floor": _ratio(float(row[field]), floor)})
    return out


def render_markdown(results: dict[str, Any], machine: dict[str, Any], chart: str | None) -> str:
    """The results page: machine, one table per scenario with ratios, the targets."""
    lines = [f"# secure_ws benchmark — {results['started']}", ""]
    lines.append(
        f"Mode: {'quick (smoke run, not for comparison)' if results['quick'] else 'full'}. "
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
    lines += _table(
        evaluate_targets(results),
        [("target", "target"), ("value", "measured"), ("bound", "bound"), ("met", "met")],
    )
    if chart:
        lines += ["", f"![chart]({chart})"]
    lines += ["", "Reproduce: `python -m bench` (add `--quick` for a smoke run)."]
    return "\n".join(lines) + "\n"


def render_chart(results: dict[str, Any], path: Path) -> bool:
    """Four panels (one per scenario, figure against load level); ``False`` without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    panels = [
        ("handshake", "rate", "handshakes/s", "concurrent workers"),
        ("messages", "rate", "messages/s", "connections"),
        ("fanout", "rate", "deliveries/s", "subscribers"),
        ("memory", "kib_per_conn", "KiB per idle connection", "connections"),
    ]
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    for ax, (scenario, field, ylabel, xlabel) in zip(axes.flat, panels, strict=True):
        rows = _rows(results, scenario)
        ax.set_title(scenario)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        for stack in dict.fromkeys(r["stack"] for r in rows):
            points = [(r["level"], r[field]) for r in rows if r["stack"] == stack]
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=stack)
        if rows:
            ax.set_xscale("log")
            ax.legend(fontsize=8)
        ax.grid(True, alpha=0.3)
    fig.suptitle("secure_ws vs plain Channels (floor) and the DIY JWT stack")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
