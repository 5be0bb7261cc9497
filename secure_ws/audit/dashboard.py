"""The audit dashboard's numbers and its chart geometry (drawn as inline SVG, no JS).

Every figure sums ``ConnectionRecord.count``, so aggregated refusal rows weigh what they
stand for and the chart shows attempts, not rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Q, Sum
from django.db.models.functions import TruncHour
from django.utils import timezone

from secure_ws.audit.models import ConnectionRecord
from secure_ws.codes import Outcome

#: Bar colours: accepted first, then one per refusal reason (cycled), colour-blind safe.
ACCEPTED_COLOUR = "#1b9e77"
REASON_COLOURS = (
    "#d95f02",
    "#7570b3",
    "#e7298a",
    "#66a61e",
    "#e6ab02",
    "#a6761d",
    "#666666",
    "#1f78b4",
    "#b15928",
    "#fb9a99",
)

CHART_WIDTH = 760
CHART_HEIGHT = 240
CHART_LEFT = 48
CHART_BOTTOM = 28
HOURS = 24


@dataclass
class Bar:
    """One coloured segment of an hour's stacked bar."""

    x: float
    y: float
    width: float
    height: float
    colour: str
    label: str


@dataclass
class Dashboard:
    """Everything the dashboard template draws."""

    since: datetime
    live: int
    accepted: int
    refused: int
    bars: list[Bar] = field(default_factory=list)
    legend: list[tuple[str, str]] = field(default_factory=list)
    hour_labels: list[tuple[float, str]] = field(default_factory=list)
    y_ticks: list[tuple[float, int]] = field(default_factory=list)
    top_ips: list[dict[str, Any]] = field(default_factory=list)
    top_origins: list[dict[str, Any]] = field(default_factory=list)
    width: int = CHART_WIDTH
    height: int = CHART_HEIGHT
    left: int = CHART_LEFT
    plot_bottom: int = CHART_HEIGHT - CHART_BOTTOM


def build_dashboard(now: datetime | None = None) -> Dashboard:
    """Return the last 24 hours: attempts per hour by outcome and reason, top refusers."""
    now = now or timezone.now()
    end = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    since = end - timedelta(hours=HOURS)
    window = ConnectionRecord.objects.filter(opened_at__gte=since, opened_at__lt=end)
    refused = window.filter(outcome=Outcome.REFUSED.value)

    per_hour: dict[datetime, dict[str, int]] = {}
    rows = (
        window.exclude(outcome="unrecorded")
        .annotate(hour=TruncHour("opened_at"))
        .values("hour", "outcome", "reason")
        .annotate(n=Sum("count"))
    )
    for row in rows:
        series = "accepted" if row["outcome"] == Outcome.ACCEPTED.value else row["reason"]
        hour = per_hour.setdefault(row["hour"], {})
        hour[series] = hour.get(series, 0) + int(row["n"] or 0)

    reasons = sorted({s for h in per_hour.values() for s in h if s != "accepted"})
    colours = {"accepted": ACCEPTED_COLOUR}
    colours.update({r: REASON_COLOURS[i % len(REASON_COLOURS)] for i, r in enumerate(reasons)})
    peak = max((sum(h.values()) for h in per_hour.values()), default=0)
    scale_top = _nice_ceiling(peak)

    board = Dashboard(
        since=since,
        live=ConnectionRecord.objects.filter(
            outcome=Outcome.ACCEPTED.value, closed_at__isnull=True
        ).count(),
        accepted=int(
            window.filter(outcome=Outcome.ACCEPTED.value).aggregate(n=Sum("count"))["n"] or 0
        ),
        refused=int(refused.aggregate(n=Sum("count"))["n"] or 0),
        legend=[(series, colours[series]) for series in ["accepted", *reasons]],
    )
    plot_height = board.plot_bottom - 10
    slot = (CHART_WIDTH - CHART_LEFT) / HOURS
    for index in range(HOURS):
        start = since + timedelta(hours=index)
        x = CHART_LEFT + index * slot + 2
        if index % 3 == 0:
            board.hour_labels.append((x, timezone.localtime(start).strftime("%H:00")))
        y = float(board.plot_bottom)
        for series in ["accepted", *reasons]:
            value = per_hour.get(start, {}).get(series, 0)
            if not value:
                continue
            height = plot_height * value / scale_top
            y -= height
            board.bars.append(
                Bar(x, y, slot - 4, height, colours[series], f"{start:%H}:00 {series}: {value}")
            )
    board.y_ticks = [
        (board.plot_bottom - plot_height * step / 4, scale_top * step // 4) for step in range(5)
    ]
    board.top_ips = [
        dict(row)
        for row in refused.exclude(client_ip="")
        .values("client_ip")
        .annotate(n=Sum("count"))
        .order_by("-n", "client_ip")[:10]
    ]
    board.top_origins = [
        dict(row)
        for row in refused.filter(~Q(origin=""))
        .values("origin")
        .annotate(n=Sum("count"))
        .order_by("-n", "origin")[:10]
    ]
    return board


def _nice_ceiling(value: int) -> int:
    """Return a round axis maximum (a multiple of 4) at or above ``value``."""
    if value <= 4:
        return 4
    magnitude = 10 ** (len(str(value)) - 1)
    for step in (1, 2, 2.5, 4, 5, 6, 8, 10):
        top = int(step * magnitude)
        if top >= value and top % 4 == 0:
            return top
    return ((value + 3) // 4) * 4
