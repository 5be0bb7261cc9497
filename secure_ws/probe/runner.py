"""Run the selected checks one after another, each under its own timeout.

A check that raises or times out becomes a WARN with the exception's class name (never
its message, which could carry input); every evidence line is redacted here, in one place,
so no check can print a secret by accident.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from secure_ws.probe.model import Check, CheckResult, ProbeConfig, Verdict, redact
from secure_ws.probe.session import ProbeSession

ProgressCallback = Callable[[int, int, Check, CheckResult | None], None]


@dataclass(frozen=True)
class ProbeRun:
    """The results of one run, and the protocol the endpoint was found to speak."""

    results: list[CheckResult]
    mode: str | None


async def run_checks(
    config: ProbeConfig,
    checks: Sequence[Check],
    progress: ProgressCallback | None = None,
) -> ProbeRun:
    """Run ``checks`` against ``config.url`` and return one result per check, in order.

    ``progress(index, total, check, result)`` is called before (``result=None``) and after
    each check.
    """
    session = ProbeSession(config)
    secrets = list(config.secrets())
    results: list[CheckResult] = []
    total = len(checks)
    for index, check in enumerate(checks, 1):
        if progress:
            progress(index, total, check, None)
        start = time.monotonic()
        try:
            verdict, evidence = await asyncio.wait_for(check.func(session), config.timeout)
        except TimeoutError:
            verdict, evidence = Verdict.WARN, f"no verdict within {config.timeout:g}s"
        except Exception as exc:
            verdict, evidence = Verdict.WARN, f"probe error: {type(exc).__name__}"
        result = CheckResult(
            check_id=check.id,
            verdict=verdict,
            evidence=redact(evidence, secrets),
            duration=round(time.monotonic() - start, 3),
        )
        results.append(result)
        if progress:
            progress(index, total, check, result)
    return ProbeRun(results=results, mode=session.mode)


def run_probe(
    config: ProbeConfig, checks: Sequence[Check], progress: ProgressCallback | None = None
) -> ProbeRun:
    """Synchronous wrapper of :func:`run_checks` for the CLI and management command."""
    return asyncio.run(run_checks(config, checks, progress))


def exit_code(results: Sequence[CheckResult]) -> int:
    """1 when any check failed, else 0."""
    return 1 if any(r.verdict is Verdict.FAIL for r in results) else 0
