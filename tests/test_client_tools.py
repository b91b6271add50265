"""Schema tools on graphql-js 16 read the live endpoint's introspection as schema.graphql.

GraphQL Code Generator (the schema-ast and introspection plugins) and graphql-inspector
are the npm devDependencies pinned with graphql 16, what most tools still ship; each runs
once, against one real server. graphql-core 3.3's @deprecated lists a location graphql-js
16 cannot represent (DIRECTIVE_DEFINITION), which failed both (app/graphql/schema.py).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from graphql import build_client_schema, build_schema, lexicographic_sort_schema, print_schema

from support.servers import ROOT, Server, start_server

BIN = ROOT / "node_modules" / ".bin"


def canonical(sdl: str) -> str:
    """The schema an SDL text describes, printed in one order (tools sort fields)."""
    return print_schema(lexicographic_sort_schema(build_schema(sdl)))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if shutil.which("node") is None:
        pytest.skip("node is not on PATH: the schema tools need Node.js")
    if not (BIN / "graphql-codegen").exists() or not (BIN / "graphql-inspector").exists():
        pytest.skip("node_modules lacks the schema tools: run `npm ci` at the top")
    work = tmp_path_factory.mktemp("tools")
    running = start_server({"DATABASE_URL": f"sqlite:///{work / 'jobs.db'}"}, work / "server.log")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def outputs(server: Server, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Both tools run at once against the live endpoint; what each wrote."""
    out = tmp_path_factory.mktemp("out")
    endpoint = server.url + "/graphql"
    config = out / "codegen.json"
    config.write_text(
        json.dumps(
            {
                "schema": endpoint,
                "generates": {
                    str(out / "codegen.graphql"): {"plugins": ["schema-ast"]},
                    str(out / "codegen.json"): {"plugins": ["introspection"]},
                },
            }
        )
    )
    commands = {
        "codegen": [str(BIN / "graphql-codegen"), "--config", str(config)],
        "inspector": [
            str(BIN / "graphql-inspector"),
            "introspect",
            endpoint,
            "--write",
            str(out / "inspector.graphql"),
        ],
    }
    running = {
        name: subprocess.Popen(
            command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for name, command in commands.items()
    }
    for name, process in running.items():
        printed, _ = process.communicate(timeout=120)
        assert process.returncode == 0, f"{name} failed:\n{printed}"
    return {
        "codegen sdl": out / "codegen.graphql",
        "codegen introspection": out / "codegen.json",
        "inspector sdl": out / "inspector.graphql",
    }


def test_codegen_prints_the_committed_schema(outputs: dict[str, Path]) -> None:
    committed = canonical((ROOT / "schema.graphql").read_text())
    assert canonical(outputs["codegen sdl"].read_text()) == committed


def test_codegen_introspection_builds_the_committed_schema(outputs: dict[str, Path]) -> None:
    introspection = json.loads(outputs["codegen introspection"].read_text())
    built = print_schema(lexicographic_sort_schema(build_client_schema(introspection)))
    assert built == canonical((ROOT / "schema.graphql").read_text())
    # What graphql-js 16 wrote holds no directive location it cannot represent.
    deprecated = next(
        d for d in introspection["__schema"]["directives"] if d["name"] == "deprecated"
    )
    assert "DIRECTIVE_DEFINITION" not in deprecated["locations"]


def test_inspector_introspects_the_committed_schema(outputs: dict[str, Path]) -> None:
    committed = canonical((ROOT / "schema.graphql").read_text())
    assert canonical(outputs["inspector sdl"].read_text()) == committed
