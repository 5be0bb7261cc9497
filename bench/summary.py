"""The table of ``docs/performance.md`` from a run's JSON: ``python -m bench.summary <json>``.

Each row is one figure, each column one stack, every cell the median figure over the
rounds and, in brackets, the median over the rounds of its multiple of the plain consumer
on the same server (the way the targets are computed). Paste the
output into the page (and copy the run's chart to ``docs/img/performance.png``) after a
run worth publishing.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from bench.report import _fmt
from bench.targets import median_or_nan, ratio, rows_of, value

#: (scenario, field, row title, unit, plain stack, CATM stack, secure stack)
ROWS = [
    ("handshake", "rate", "handshakes/s, daphne", "/s", "floor", "catm", "secure"),
    ("handshake", "rate", "handshakes/s, uvicorn", "/s", "floor-uvicorn", None, "secure-uvicorn"),
    ("handshake", "p99_ms", "p99 handshake latency, daphne", " ms", "floor", "catm", "secure"),
    ("messages", "rate", "messages/s, daphne", "/s", "floor", None, "secure"),
    ("messages", "rate", "messages/s, uvicorn", "/s", "floor-uvicorn", None, "secure-uvicorn"),
    ("fanout", "rate", "fan-out deliveries/s, daphne", "/s", "floor", None, "secure"),
    ("memory", "kib_per_conn", "memory/idle connection, daphne", " KiB", "floor", "catm", "secure"),
    (
        "memory", "kib_per_conn", "memory/idle connection, uvicorn", " KiB",
        "floor-uvicorn", None, "secure-uvicorn",
    ),
]  # fmt: skip


def _cell(results: dict[str, Any], scenario: str, stack: str | None, floor: str, level: int,
          field: str, unit: str) -> str:  # fmt: skip
    if stack is None:
        return "-"
    figure = value(rows_of(results, scenario), stack, level, field)
    if figure != figure:  # nan: not measured
        return "-"
    per_round = [
        ratio(
            value(rows_of(r, scenario), stack, level, field),
            value(rows_of(r, scenario), floor, level, field),
        )
        for r in results.get("rounds") or [results]
    ]
    return f"{_fmt(figure)}{unit} ({median_or_nan(per_round):.2f}x)"


#: What a scenario's level counts.
LEVEL_UNITS = {
    "handshake": "workers",
    "messages": "connections",
    "fanout": "subscribers",
    "memory": "connections",
}


def summary(results: dict[str, Any]) -> str:
    """The Markdown table of the user page."""
    lines = ["| figure | plain Channels | CATM | secure_ws |", "|---|---|---|---|"]
    for scenario, field, title, unit, floor, catm, secure in ROWS:
        rows = rows_of(results, scenario)
        levels = sorted({r["level"] for r in rows if r["stack"] == secure})
        if not levels:
            continue
        level = levels[-1]
        cells = [
            _cell(results, scenario, stack, floor, level, field, unit)
            for stack in (floor, catm, secure)
        ]
        where = f"{level:,} {LEVEL_UNITS[scenario]}"
        lines.append(f"| {title}, {where} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    results = json.loads(Path(sys.argv[1]).read_text())
    print(summary(results))


if __name__ == "__main__":
    main()
