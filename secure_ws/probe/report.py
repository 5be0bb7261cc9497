"""Probe output: a readable table, a JSON report and JUnit XML for CI.

Evidence is already redacted by the runner; these functions only format.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from typing import Any
from xml.etree import ElementTree

from secure_ws.probe.model import Check, CheckResult, Verdict

SCHEMA_VERSION = 1


def summary(results: Sequence[CheckResult]) -> dict[str, int]:
    """Count of each verdict (every verdict present, zero or not)."""
    counts = Counter(r.verdict for r in results)
    return {v.value: counts.get(v, 0) for v in Verdict}


def table(results: Sequence[CheckResult], checks: Sequence[Check]) -> str:
    """A fixed-width table: id, verdict, title, evidence, OWASP reference."""
    by_id = {c.id: c for c in checks}
    id_width = max([len("CHECK"), *(len(r.check_id) for r in results)])
    lines = [f"{'CHECK':<{id_width}}  VERDICT  TITLE / EVIDENCE / OWASP"]
    for result in results:
        check = by_id[result.check_id]
        lines.append(f"{result.check_id:<{id_width}}  {result.verdict.value:<7}  {check.title}")
        pad = " " * (id_width + 11)
        lines.append(f"{pad}evidence: {result.evidence}")
        lines.append(f"{pad}ref: {check.owasp.split(';')[0]}")
    counts = summary(results)
    lines.append(", ".join(f"{n} {v}" for v, n in counts.items()))
    return "\n".join(lines)


def to_json(
    url: str, mode: str | None, results: Sequence[CheckResult], checks: Sequence[Check]
) -> str:
    """The JSON report (``schema_version`` 1)."""
    by_id = {c.id: c for c in checks}
    data: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "target": url,
        "protocol": mode,
        "summary": summary(results),
        "results": [
            {
                "id": r.check_id,
                "group": by_id[r.check_id].group,
                "title": by_id[r.check_id].title,
                "verdict": r.verdict.value,
                "evidence": r.evidence,
                "owasp": by_id[r.check_id].owasp,
                "duration": r.duration,
            }
            for r in results
        ],
    }
    return json.dumps(data, indent=2)


def to_junit(url: str, results: Sequence[CheckResult], checks: Sequence[Check]) -> str:
    """JUnit XML: one testcase per check; FAIL is a failure, SKIP a skip, WARN a pass."""
    by_id = {c.id: c for c in checks}
    counts = summary(results)
    suite = ElementTree.Element(
        "testsuite",
        name="secure-ws-probe",
        tests=str(len(results)),
        failures=str(counts["FAIL"]),
        skipped=str(counts["SKIP"]),
        errors="0",
        time=f"{sum(r.duration for r in results):.3f}",
    )
    for result in results:
        case = ElementTree.SubElement(
            suite,
            "testcase",
            classname=f"ws_probe.{by_id[result.check_id].group}",
            name=result.check_id,
            time=f"{result.duration:.3f}",
        )
        if result.verdict is Verdict.FAIL:
            ElementTree.SubElement(case, "failure", message=result.evidence)
        elif result.verdict is Verdict.SKIP:
            ElementTree.SubElement(case, "skipped", message=result.evidence)
        else:
            out = ElementTree.SubElement(case, "system-out")
            out.text = f"{result.verdict.value}: {result.evidence}"
    ElementTree.SubElement(suite, "properties").append(
        ElementTree.Element("property", name="target", value=url)
    )
    return ElementTree.tostring(suite, encoding="unicode", xml_declaration=True)
