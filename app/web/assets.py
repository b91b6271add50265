"""Third-party browser files: React, GraphiQL and graphql-ws, served by the gateway.

They are pinned in package.json and served from /vendor/<package>/, so GraphiQL
and the jobs page work on networks without internet access. Only the files the
pages load are served (app.web.browser_files lists them). They come from the
package itself when it was installed from a wheel (the build put them in
app/web/bundled: hatch_build.py), else from the checkout's node_modules, which
`npm ci` fills (development, editable installs; never committed). When they are
missing the pages still answer, say how to install them, and so does one line of
the start-up log.
"""

from __future__ import annotations

import os
from pathlib import Path

from starlette.routing import Mount
from starlette.staticfiles import PathLike, StaticFiles

from app.web.browser_files import BUNDLE, FILES

BUNDLED = Path(__file__).resolve().parent / BUNDLE
NODE_MODULES = Path(__file__).resolve().parents[2] / "node_modules"
# The wheel's own files first; a checkout's node_modules otherwise.
LOCATION = BUNDLED if BUNDLED.is_dir() else NODE_MODULES
INSTALL_COMMAND = "npm ci --no-audit --no-fund"

__all__ = [
    "BUNDLED",
    "FILES",
    "INSTALL_COMMAND",
    "LOCATION",
    "NODE_MODULES",
    "VendorFiles",
    "install_hint",
    "missing",
    "mounts",
]


class VendorFiles(StaticFiles):
    """StaticFiles over one package folder, answering only for the listed files."""

    def __init__(self, directory: PathLike, files: tuple[str, ...]) -> None:
        super().__init__(directory=directory, check_dir=False)
        self.files = frozenset(files)

    def lookup_path(self, path: str) -> tuple[str, os.stat_result | None]:
        if path not in self.files:
            return "", None
        return super().lookup_path(path)

    async def check_config(self) -> None:
        try:
            await super().check_config()
        except RuntimeError:
            pass  # no folder: not installed, a 404 per file rather than a 500


def mounts(node_modules: Path = LOCATION) -> list[Mount]:
    return [
        Mount(f"/vendor/{package}", app=VendorFiles(node_modules / package, files))
        for package, files in FILES.items()
    ]


def missing(node_modules: Path = LOCATION) -> list[str]:
    """The listed files that are not installed, as `package/file`."""
    return [
        f"{package}/{file}"
        for package, files in FILES.items()
        for file in files
        if not (node_modules / package / file).is_file()
    ]


def install_hint(node_modules: Path = LOCATION) -> str | None:
    """One line saying how to install the missing files; None when all are there."""
    packages = sorted({path.split("/")[0] for path in missing(node_modules)})
    if not packages:
        return None
    if node_modules == BUNDLED:
        return (
            f"GraphiQL and the jobs page cannot load: the installed package lacks "
            f"{', '.join(packages)} in {node_modules}; reinstall it from a wheel built "
            f"after `{INSTALL_COMMAND}` (docs/operations.md)"
        )
    return (
        f"GraphiQL and the jobs page cannot load: npm packages {', '.join(packages)} "
        f"are missing from {node_modules}; install them with `{INSTALL_COMMAND}` "
        f"in {node_modules.parent}"
    )
