"""Issue 12's targets, evaluated per round and summarised as the median over rounds.

Each round measures every stack once, in an order that alternates between rounds, so a
ratio taken inside one round compares stacks measured minutes apart on the same machine
state. The reported figure of a target is the median of its per-round ratios.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Row = dict[str, Any]
Results = dict[str, Any]

#: The handshake p99 target is read at this many concurrent workers (in quick and full runs).
P99_WORKERS = 8
#: The fan-out target is read at this many subscribers (in quick and full runs).
FANOUT_SUBSCRIBERS = 1000
#: Connections one daphne process must hold (the ``--connections`` mode).
HELD_TARGET = 20000


def rows_of(results: Results, scenario: str) -> list[Row]:
    """The rows one round (or the median summary) measured for ``scenario``."""
    rows: list[Row] = results.get(scenario, {}).get("rows", [])
    return rows


def value(rows: list[Row], stack: str, level: int, field: str) -> float:
    """``field`` of ``stack`` at ``level``; ``nan`` when not measured."""
    for row in rows:
        if row["stack"] == stack and row["level"] == level:
            return float(row[field])
    return float("nan")


def peak(rows: list[Row], stack: str, field: str = "rate") -> float:
    """The highest ``field`` of ``stack`` over the levels measured."""
    values = [float(r[field]) for r in rows if r["stack"] == stack]
    return max(values) if values else float("nan")


def ratio(a: float, b: float) -> float:
    """``a / b``, or ``nan`` when either is missing or ``b`` is zero."""
    return a / b if b and not math.isnan(a) and not math.isnan(b) else float("nan")


@dataclass(frozen=True)
class Target:
    """One target: how to measure it in one round, and its bound (``None``: reported only)."""

    name: str
    measure: Callable[[Results], float]
    bound: float | None
    higher_is_better: bool = True
    #: What to add next to the figure (from the last round that measured it).
    detail: Callable[[Results], str] | None = None

    def met(self, measured: float) -> bool | None:
        if self.bound is None:
            return None
        if math.isnan(measured):
            return False
        return measured >= self.bound if self.higher_is_better else measured <= self.bound

    @property
    def bound_text(self) -> str:
        if self.bound is None:
            return "(reported)"
        return f"{'>=' if self.higher_is_better else '<='} {self.bound}"


def _hs_peak(a: str, b: str) -> Callable[[Results], float]:
    return lambda r: ratio(peak(rows_of(r, "handshake"), a), peak(rows_of(r, "handshake"), b))


def _hs_p99(r: Results) -> float:
    rows = rows_of(r, "handshake")
    return ratio(
        value(rows, "secure", P99_WORKERS, "p99_ms"), value(rows, "floor", P99_WORKERS, "p99_ms")
    )


def _memory(level: int) -> Callable[[Results], float]:
    def measure(r: Results) -> float:
        rows = rows_of(r, "memory")
        return ratio(
            value(rows, "secure", level, "kib_per_conn"),
            value(rows, "floor", level, "kib_per_conn"),
        )

    return measure


def _peak_ratio(scenario: str) -> Callable[[Results], float]:
    return lambda r: ratio(
        peak(rows_of(r, scenario), "secure"), peak(rows_of(r, scenario), "floor")
    )


def _fanout(r: Results) -> float:
    rows = rows_of(r, "fanout")
    return ratio(
        value(rows, "secure", FANOUT_SUBSCRIBERS, "rate"),
        value(rows, "floor", FANOUT_SUBSCRIBERS, "rate"),
    )


def _held_row(r: Results) -> Row | None:
    rows = [row for row in rows_of(r, "memory") if row["stack"] == "secure"]
    top = [row for row in rows if row["level"] >= HELD_TARGET and "held_at_end" in row]
    return top[-1] if top else None


def _held(r: Results) -> float:
    row = _held_row(r)
    return float(row["held_at_end"]) if row else float("nan")


def _held_detail(r: Results) -> str:
    row = _held_row(r)
    if row is None:
        return ""
    return f"RSS {row['rss_mib']:,.0f} MiB at {row['open']:,} open, failures {row['failures']}"


TARGETS: list[Target] = [
    Target("handshakes/s secure / floor (daphne, peak)", _hs_peak("secure", "floor"), 0.9),
    Target("handshakes/s secure / CATM SimpleJWT (daphne, peak)", _hs_peak("secure", "catm"), 1.5),
    Target(
        "handshakes/s secure / floor (uvicorn, peak)",
        _hs_peak("secure-uvicorn", "floor-uvicorn"),
        0.9,
    ),
    Target(f"p99 handshake secure / floor (daphne, {P99_WORKERS} workers)", _hs_p99, 1.2, False),
    Target("memory/idle conn secure / floor (1,000)", _memory(1000), 1.1, False),
    Target("memory/idle conn secure / floor (10,000)", _memory(10000), 1.1, False),
    Target(
        f"{HELD_TARGET:,} connections held by one daphne (secure)",
        _held,
        HELD_TARGET,
        detail=_held_detail,
    ),
    Target("messages/s secure / floor (daphne, peak)", _peak_ratio("messages"), 1.0),
    Target(
        f"fan-out deliveries/s secure / floor ({FANOUT_SUBSCRIBERS:,} subscribers)", _fanout, 1.0
    ),
    Target(
        "handshakes/s audit on / off (daphne, peak)", _hs_peak("secure", "secure-noaudit"), None
    ),
    Target("handshakes/s secure / DIY (daphne, peak)", _hs_peak("secure", "diy"), None),
]


def median_or_nan(values: list[float]) -> float:
    """The median of the measured values (``nan`` ones are not measured); ``nan`` if none."""
    measured = [v for v in values if not math.isnan(v)]
    return statistics.median(measured) if measured else float("nan")


def evaluate(rounds: list[Results]) -> list[Row]:
    """Every target: per-round values, their median, the bound and whether it is met."""
    checks = []
    for target in TARGETS:
        per_round = [target.measure(r) for r in rounds]
        measured = median_or_nan(per_round)
        details = [target.detail(r) for r in rounds] if target.detail else []
        checks.append(
            {
                "target": target.name,
                "value": measured,
                "rounds": per_round,
                "bound": target.bound_text,
                "met": target.met(measured),
                "measured": not math.isnan(measured),
                "note": next((d for d in reversed(details) if d), ""),
            }
        )
    return checks


def median_rows(rounds: list[Results], scenario: str) -> list[Row]:
    """One row per (stack, level): the median of every numeric field over the rounds."""
    grouped: dict[tuple[str, int], list[Row]] = {}
    for results in rounds:
        for row in rows_of(results, scenario):
            grouped.setdefault((row["stack"], row["level"]), []).append(row)
    summary = []
    for (stack, level), rows in grouped.items():
        merged: Row = {"stack": stack, "level": level, "rounds": len(rows)}
        for key in rows[0]:
            if key in merged:
                continue
            values = [r[key] for r in rows if key in r]
            if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
                merged[key] = statistics.median(values)
            elif all(isinstance(v, dict) for v in values):
                merged[key] = _summed(values)
            else:
                merged[key] = values[-1] if len(values) == 1 else values
        summary.append(merged)
    return summary


def _summed(counts: list[dict[str, int]]) -> dict[str, int]:
    """Failure counts of every round, added up."""
    total: dict[str, int] = {}
    for item in counts:
        for key, count in item.items():
            total[key] = total.get(key, 0) + count
    return total
