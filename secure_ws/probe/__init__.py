"""ws_probe: a black-box WebSocket security scanner (no Django import at module level).

Point it at any ``ws://``/``wss://`` endpoint::

    secure-ws-probe wss://example.com/ws/ --token "$TOKEN" --origin https://example.com

or from Python::

    from secure_ws.probe import ProbeConfig, all_checks, run_probe
    run = run_probe(ProbeConfig(url=...), all_checks())
"""

from __future__ import annotations

try:
    import websockets  # noqa: F401  (the client every check drives)
except ImportError as exc:  # the [probe] extra is optional: say how to get it
    raise ImportError(
        "the WebSocket probe needs the websockets package: pip install 'django-secure-ws[probe]'"
    ) from exc

from secure_ws.probe.catalog import all_checks, select_checks
from secure_ws.probe.model import Check, CheckResult, ProbeConfig, Verdict
from secure_ws.probe.runner import ProbeRun, exit_code, run_checks, run_probe

__all__ = [
    "Check",
    "CheckResult",
    "ProbeConfig",
    "ProbeRun",
    "Verdict",
    "all_checks",
    "exit_code",
    "run_checks",
    "run_probe",
    "select_checks",
]
