"""The set that runs is the set that was tested: constraints.txt, installed exactly."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _locked() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not an exact pin (name==version)"
            pins[_canonical(name)] = version
    return pins


def test_every_installed_package_is_at_its_locked_version() -> None:
    locked = _locked()
    off = {
        name: f"{dist.version} installed, {locked[name]} locked"
        for dist in metadata.distributions()
        if (name := _canonical(dist.metadata["Name"])) in locked and dist.version != locked[name]
    }
    assert not off, f"install with `pip install -c constraints.txt ...`: {off}"


def test_every_declared_dependency_is_locked_within_its_bounds() -> None:
    locked = _locked()
    declared = [Requirement(text) for text in metadata.requires("jobs-gateway") or []]
    problems = []
    for requirement in declared:
        name = _canonical(requirement.name)
        if name not in locked:
            problems.append(f"{requirement.name} is declared but not in constraints.txt")
        elif not requirement.specifier.contains(locked[name], prereleases=True):
            problems.append(f"{requirement.name}=={locked[name]} is outside {requirement}")
    assert not problems, "; ".join(problems) + " (scripts/upgrade-lock remakes the lock)"
