"""Wheel build hook: the browser files GraphiQL and the jobs page load go into the wheel.

They are taken from node_modules as `npm ci` installed it from package-lock.json,
each package at the version the lock pins, and placed at
app/web/bundled/<package>/<file> (app/web/browser_files.py lists them), where
app.web.assets serves them from: `pip install` of the wheel is enough, no npm at
run time. Missing or at another version, the build stops with one line saying
what to run. Editable installs (`pip install -e .`) serve node_modules directly.
"""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

INSTALL = "npm ci --no-audit --no-fund"


class BrowserFilesHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel" or version == "editable":
            return
        root = Path(self.root)
        spec = runpy.run_path(str(root / "app" / "web" / "browser_files.py"))
        pinned = json.loads((root / "package-lock.json").read_text())["packages"]
        for package, files in spec["FILES"].items():
            folder = root / "node_modules" / package
            want = pinned[f"node_modules/{package}"]["version"]
            have = _installed_version(folder)
            if have != want:
                found = f"version {have} is installed" if have else "it is not installed"
                _stop(f"npm package {package} {want} is needed in {folder} ({found})")
            for name in (*files, spec["LICENSES"][package]):
                source = folder / name
                if not source.is_file():
                    _stop(f"{source} is missing")
                target = f"app/web/{spec['BUNDLE']}/{package}/{name}"
                build_data["force_include"][str(source)] = target


def _installed_version(folder: Path) -> str | None:
    try:
        version: str = json.loads((folder / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None
    return version


def _stop(problem: str) -> None:
    sys.exit(f"jobs-gateway wheel: {problem}; run `{INSTALL}` in the checkout, then build again")
