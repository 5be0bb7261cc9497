"""Generate the check table of ``docs/probe.md`` from the registry.

``python -m secure_ws.probe.docs`` prints it; a test fails when the committed table and
the registry drift apart.
"""

from __future__ import annotations

from secure_ws.probe.catalog import all_checks
from secure_ws.probe.registry import GROUPS

BEGIN = "<!-- BEGIN GENERATED CHECKS: python -m secure_ws.probe.docs -->"
END = "<!-- END GENERATED CHECKS -->"


def checks_markdown() -> str:
    """One table per group: id, what it tries, why, OWASP reference."""
    checks = all_checks()
    lines = [BEGIN, ""]
    for group in GROUPS:
        members = [c for c in checks if c.group == group]
        if not members:
            continue
        lines += [
            f"### {group}",
            "",
            "| id | what it tries | why | reference |",
            "| --- | --- | --- | --- |",
        ]
        for c in members:
            ref = c.owasp.split(";")[0]
            link = c.owasp.split(";")[1].strip() if ";" in c.owasp else c.owasp
            lines.append(f"| `{c.id}` | {c.title} | {c.rationale} | [{ref}]({link}) |")
        lines.append("")
    lines.append(END)
    return "\n".join(lines)


if __name__ == "__main__":
    print(checks_markdown())
