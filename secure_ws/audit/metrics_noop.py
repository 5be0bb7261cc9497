"""Stand-ins for prometheus-client's metric types when the ``[metrics]`` extra is missing.

The audit writer feeds the metrics on every flush whether or not anyone scrapes them; on
a core install these accept every call and keep nothing. ``METRICS_ENABLED`` without
prometheus-client is a system check error (secure_ws.E091), so the view never serves them.
"""

from __future__ import annotations

from typing import Any

CONTENT_TYPE_LATEST = "text/plain; version=0.0.4; charset=utf-8"


class _Metric:
    """Accepts a metric's calls (``inc``, ``dec``, ``set``, ``observe``, ``labels``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def labels(self, *args: Any, **kwargs: Any) -> _Metric:
        return self

    def inc(self, amount: float = 1) -> None:
        pass

    def dec(self, amount: float = 1) -> None:
        pass

    def set(self, value: float) -> None:
        pass

    def observe(self, value: float) -> None:
        pass


Counter = Gauge = Histogram = _Metric


def generate_latest() -> bytes:
    """Nothing to expose."""
    return b""
