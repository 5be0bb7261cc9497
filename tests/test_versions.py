"""The Django versions the project claims are the ones CI tests, everywhere they are named.

README, the package classifiers and CI (``.ci/run``: the pinned Django of
requirements/base.txt, then ``DJANGO_VERSION``) must name the same major.minor versions.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def ci_versions() -> set[str]:
    pinned = re.search(r"^Django==([\d.]+)$", (ROOT / "requirements/base.txt").read_text(), re.M)
    assert pinned, "requirements/base.txt pins no Django"
    extra = re.findall(r"DJANGO_VERSION=([\d.]+)", (ROOT / ".ci/run").read_text())
    assert extra, ".ci/run runs no second Django"
    return {minor(pinned.group(1)), *(minor(v) for v in extra)}


def classifier_versions() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    prefix = "Framework :: Django :: "
    return {c.removeprefix(prefix) for c in project["classifiers"] if c.startswith(prefix)}


def readme_versions() -> set[str]:
    return set(re.findall(r"Django (\d+\.\d+)", (ROOT / "README.md").read_text()))


def test_readme_classifiers_and_ci_name_the_same_django_versions() -> None:
    tested = ci_versions()
    assert len(tested) == 2
    assert classifier_versions() == tested
    assert readme_versions() == tested


def test_the_lowest_tested_django_is_the_minimum_dependency() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    (django,) = [d for d in project["dependencies"] if d.startswith("Django")]
    assert django == f"Django>={min(ci_versions(), key=lambda v: tuple(map(int, v.split('.'))))}"
