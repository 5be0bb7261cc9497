"""Prometheus metrics, fed by the audit writer, and the opt-in ``/metrics`` view.

The gate and the consumer never call this module: every accepted, refused and closed
connection and every violation already goes through the audit writer, whose flusher
updates these metrics (the ``metrics`` entry of ``AUDIT_SINKS``, see
:class:`secure_ws.audit.sinks.MetricsSink`), within ``AUDIT_FLUSH_INTERVAL`` of the event.

Multi-process servers: each process exposes its own metrics (per-process endpoint, the
default ``prometheus_client`` registry); run one daphne per port and scrape every port, or
label the targets by port. The library's multiprocess mode is not used: it needs a shared
directory cleaned at every deploy and cannot express the live-connections gauge correctly
across restarts.

prometheus-client is the ``[metrics]`` extra; without it every metric is a no-op
(:mod:`secure_ws.audit.metrics_noop`) and ``METRICS_ENABLED`` is a check error.

The view is off unless ``METRICS_ENABLED`` is set, and even then it answers only a staff
user or a request carrying ``Authorization: Bearer <METRICS_TOKEN>``.
"""

from __future__ import annotations

import hmac

from django.http import Http404, HttpRequest, HttpResponse

from secure_ws.conf import get_settings

try:
    from prometheus_client import (
        CONTENT_TYPE_LATEST,
        Counter,
        Gauge,
        Histogram,
        generate_latest,
    )
except ImportError:  # the [metrics] extra is not installed: no-ops (check secure_ws.E091)
    from secure_ws.audit.metrics_noop import (  # type: ignore[assignment]
        CONTENT_TYPE_LATEST,
        Counter,
        Gauge,
        Histogram,
        generate_latest,
    )

CONNECTIONS_ACCEPTED = Counter(
    "secure_ws_connections_accepted_total", "WebSocket connections accepted by the gate."
)
CONNECTIONS_REFUSED = Counter(
    "secure_ws_connections_refused_total",
    "WebSocket connection attempts refused, by reason code.",
    ["reason"],
)
LIVE_CONNECTIONS = Gauge("secure_ws_live_connections", "Accepted connections currently open.")
MESSAGES_IN = Counter("secure_ws_messages_in_total", "Messages received on closed connections.")
MESSAGES_OUT = Counter("secure_ws_messages_out_total", "Messages sent on closed connections.")
VIOLATIONS = Counter(
    "secure_ws_violations_total", "Security events inside connections, by kind.", ["kind"]
)
FANOUT_DROPS = Counter(
    "secure_ws_fanout_drops_total", "Group messages dropped because a group was over capacity."
)
EVENTS_DROPPED = Counter(
    "secure_ws_events_dropped_total",
    "Fan-out events not sent to clients that left too much output unread (slow consumers).",
)
AUDIT_BUFFER_DEPTH = Gauge("secure_ws_audit_buffer_depth", "Audit records waiting to be written.")
AUDIT_WRITE_FAILURES = Counter(
    "secure_ws_audit_write_failures_total", "Audit batches the database refused (retried)."
)
AUDIT_RECORDS_LOST = Counter(
    "secure_ws_audit_records_lost_total",
    "Audit records counted but not kept because the buffer was full, by kind.",
    ["kind"],
)
HANDSHAKE_LATENCY = Histogram(
    "secure_ws_handshake_seconds",
    "Time from the start of the gate to accept or refusal.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)

#: Security-event kind the fan-out path reports when it drops a group message.
FANOUT_DROP_KIND = "group_over_capacity"


def observe_accepted(handshake_seconds: float) -> None:
    """Count an accepted connection and its handshake time."""
    CONNECTIONS_ACCEPTED.inc()
    LIVE_CONNECTIONS.inc()
    HANDSHAKE_LATENCY.observe(max(0.0, handshake_seconds))


def observe_refused(reason: str, handshake_seconds: float) -> None:
    """Count a refusal by reason and its handshake time."""
    CONNECTIONS_REFUSED.labels(reason=reason).inc()
    HANDSHAKE_LATENCY.observe(max(0.0, handshake_seconds))


def observe_closed(messages_in: int, messages_out: int, events_dropped: int) -> None:
    """Count a close and the connection's traffic."""
    LIVE_CONNECTIONS.dec()
    MESSAGES_IN.inc(messages_in)
    MESSAGES_OUT.inc(messages_out)
    EVENTS_DROPPED.inc(events_dropped)


def observe_security_event(kind: str) -> None:
    """Count a violation (and a fan-out drop, which is reported the same way)."""
    VIOLATIONS.labels(kind=kind).inc()
    if kind == FANOUT_DROP_KIND:
        FANOUT_DROPS.inc()


def _authorised(request: HttpRequest) -> bool:
    user = getattr(request, "user", None)
    if user is not None and user.is_active and user.is_staff:
        return True
    token = get_settings().METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    if token and header.startswith("Bearer "):
        return hmac.compare_digest(header[7:].encode(), token.encode())
    return False


def metrics_view(request: HttpRequest) -> HttpResponse:
    """Serve this process's metrics in the Prometheus text format (opt-in, not public).

    Answers 404 unless ``METRICS_ENABLED`` (the endpoint does not advertise itself), and
    403 unless the caller is staff or presents ``METRICS_TOKEN``.
    """
    if not get_settings().METRICS_ENABLED:
        raise Http404
    if not _authorised(request):
        return HttpResponse("forbidden\n", status=403, content_type="text/plain")
    return HttpResponse(generate_latest(), content_type=CONTENT_TYPE_LATEST)
