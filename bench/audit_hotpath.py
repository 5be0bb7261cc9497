"""What one audit call costs the event loop: ``python -m bench.audit_hotpath``.

Times the audit calls the gate and the consumer make per connection (one refusal; one open
and its close) on a writer whose flusher is not started, so only the caller's share is
measured: whatever the call does before it returns. The ``secure_ws.audit`` logger is on
(INFO, written to ``/dev/null``), as in the demo project. No database, no Redis.
"""

from __future__ import annotations

import logging
import os
import sys
import timeit

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

import django

django.setup()

from secure_ws.audit.writer import AuditWriter  # noqa: E402
from secure_ws.codes import AuthMethod, Reason  # noqa: E402
from secure_ws.connection import ConnectionInfo  # noqa: E402

ROUNDS = 5


def main() -> None:
    audit_logger = logging.getLogger("secure_ws.audit")
    audit_logger.setLevel(logging.INFO)
    audit_logger.propagate = False
    audit_logger.addHandler(logging.StreamHandler(open(os.devnull, "w")))  # noqa: SIM115
    number = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    info = ConnectionInfo(
        client_ip="203.0.113.9",
        path="/ws/files/",
        origin="https://app.example",
        user_agent="bench-agent/1.0",
        auth_method=AuthMethod.SUBPROTOCOL,
        user_id=1,
        username="alice",
    )

    def refusal() -> None:
        # A fresh writer per batch keeps the buffer far from its bound and aggregation off.
        writer = AuditWriter(autostart=False)
        for _ in range(number):
            writer.connection_refused(info, Reason.ORIGIN_REFUSED)

    def open_close() -> None:
        writer = AuditWriter(autostart=False)
        for _ in range(number):
            writer.connection_opened(info)
            writer.connection_closed(info, 1000)

    def flusher_share() -> float:
        # What moved off the loop: the log line and the metrics, per open + close (no database).
        writer = AuditWriter(autostart=False, sinks=["log", "metrics"])
        for _ in range(number):
            writer.connection_opened(info)
            writer.connection_closed(info, 1000)
        return timeit.timeit(writer.flush, number=1)

    print(f"{'call':<28} {'best of ' + str(ROUNDS):>12} {'median':>10}")
    for name, body, calls in (
        ("connection_refused", refusal, number),
        ("connection_opened + closed", open_close, number),
    ):
        times = sorted(timeit.repeat(body, number=1, repeat=ROUNDS))
        best, median = times[0] / calls * 1e6, times[len(times) // 2] / calls * 1e6
        print(f"{name:<28} {best:>10.2f}us {median:>8.2f}us")
    times = sorted(flusher_share() for _ in range(ROUNDS))
    best, median = times[0] / number * 1e6, times[len(times) // 2] / number * 1e6
    print(f"{'flusher: log+metrics, o+c':<28} {best:>10.2f}us {median:>8.2f}us")


if __name__ == "__main__":
    main()
