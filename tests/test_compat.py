"""Every private name of a dependency we use is still where we use it (app/compat.py)."""

from __future__ import annotations

import re
from pathlib import Path

from app import compat

APP = Path(__file__).resolve().parent.parent / "app"


def test_every_private_name_we_rely_on_is_still_there() -> None:
    assert compat.missing() == []


def test_a_name_that_moved_is_reported_with_its_dependency_and_version() -> None:
    gone = compat.Reach(
        "strawberry-graphql", "strawberry.schema.schema:Schema", ("_nowhere",), "x", "y"
    )
    original = compat.REACHES
    compat.REACHES = (gone,)
    try:
        [problem] = compat.missing()
    finally:
        compat.REACHES = original
    assert re.match(
        r"strawberry-graphql \d+\.\d+\.\d+: strawberry\.schema\.schema:Schema\._nowhere is gone",
        problem,
    )


def test_every_private_module_imported_in_app_is_listed() -> None:
    listed = {reach.target.partition(":")[0] for reach in compat.REACHES}
    imported = set()
    for path in APP.rglob("*.py"):
        for module in re.findall(r"^from ([\w.]+) import", path.read_text(), re.MULTILINE):
            if (
                module != "__future__"
                and not module.startswith("app")
                and any(p.startswith("_") for p in module.split("."))
            ):
                imported.add(module)
    assert imported <= listed, f"add to app/compat.py: {sorted(imported - listed)}"
