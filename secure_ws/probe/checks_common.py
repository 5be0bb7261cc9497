"""What every probe check shares: the verdict shape, OWASP references, the baseline.

Each check returns ``(verdict, evidence)``; evidence is redacted by the runner. A check
that expects a refusal treats "accepted then closed at once with a refusal code" as a
refusal too, because some servers accept and close to tell the client why.
"""

from __future__ import annotations

from secure_ws.probe.model import Verdict
from secure_ws.probe.registry import OWASP_WS, check
from secure_ws.probe.session import Handshake, ProbeSession

Result = tuple[Verdict, str]

A01 = "OWASP A01:2021 Broken Access Control; " + OWASP_WS + "#authentication"
A07 = "OWASP A07:2021 Identification and Authentication Failures; " + OWASP_WS + "#authentication"
ORIGIN = (
    "OWASP WS cheat sheet: Origin validation (CSWSH); "
    + OWASP_WS
    + "#cross-site-websocket-hijacking-cswsh"
)
TRANSPORT = "OWASP A02:2021 Cryptographic Failures; " + OWASP_WS + "#transport-security"
A05 = "OWASP A05:2021 Security Misconfiguration; " + OWASP_WS
A04 = "OWASP A04:2021 Insecure Design (DoS); " + OWASP_WS + "#denial-of-service"


def expect_refused(outcome: Handshake, what: str) -> Result:
    """PASS when the handshake was refused, FAIL when it was accepted."""
    if outcome.refused:
        return Verdict.PASS, f"{what}: refused ({outcome.describe()})"
    if outcome.accepted:
        return Verdict.FAIL, f"{what}: {outcome.describe()}"
    if outcome.status is not None and outcome.status >= 500:
        return Verdict.FAIL, f"{what}: server error {outcome.describe()} instead of a refusal"
    return Verdict.WARN, f"{what}: no clean answer ({outcome.describe()})"


async def baseline_needed(session: ProbeSession) -> Result | None:
    """A SKIP result when no legitimate connection works (nothing else would mean much)."""
    baseline = await session.detect()
    if not baseline.accepted or baseline.close_code is not None:
        return Verdict.SKIP, f"no working baseline connection ({baseline.describe()})"
    return None


@check(
    "baseline.connect",
    "baseline",
    "The given credentials and origin open a connection",
    "Every other verdict means something only if a legitimate client can connect.",
    A05,
)
async def baseline_connect(session: ProbeSession) -> Result:
    outcome = await session.detect()
    if outcome.accepted and outcome.close_code is None:
        mode = "speaks secure-ws.v1" if session.mode == "v1" else "generic JSON mode"
        return Verdict.PASS, f"{outcome.describe()}; {mode}"
    return Verdict.FAIL, f"cannot connect with the given credentials: {outcome.describe()}"
