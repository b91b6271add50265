"""Throwaway Redis and PostgreSQL servers that a test (or a bench script) may stop and start.

Outage tests stop the broker or the database under a running gateway. They never
touch the shared servers at REDIS_URL / TEST_POSTGRES_URL that other suites use:
each starts its own on a free port, with its files in a temporary folder, and
removes them afterwards. `skip_reason()` says why one cannot be started here.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from support.servers import free_port

# Seconds a server may take to start or stop on a busy machine.
START_LIMIT = 120.0


class RedisServer:
    """`redis-server` on a free port, no persistence; restartable on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @staticmethod
    def skip_reason() -> str | None:
        if shutil.which("redis-server") is None:
            return "redis-server is not installed: the broker outage tests run their own"
        return None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_LIMIT
        while not self.answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {self.port} did not start")
            time.sleep(0.05)

    def answers(self) -> bool:
        result = subprocess.run(
            ["redis-cli", "-p", str(self.port), "ping"], capture_output=True, check=False
        )
        return result.stdout.strip() == b"PONG"

    def stop(self) -> None:
        """Kill it: clients see their connections drop, as when Redis crashes."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None


def _postgres_bin() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(candidates[-1]).parent if candidates else None


class PostgresCluster:
    """A PostgreSQL cluster of our own (initdb) in a temporary folder, on a free port.

    `initdb` and the server refuse to run as root: as root, they run as the
    `postgres` user, which then owns the folder.
    """

    def __init__(self, max_connections: int = 50) -> None:
        self.port = free_port()
        self.max_connections = max_connections
        self.bin = _postgres_bin()
        self.folder = Path(tempfile.mkdtemp(prefix="jobs-pg-"))
        self.data = self.folder / "data"

    @staticmethod
    def skip_reason() -> str | None:
        if _postgres_bin() is None:
            return "PostgreSQL's server programs (initdb, pg_ctl) are not installed"
        if os.geteuid() == 0 and shutil.which("runuser") is None:
            return "running as root without runuser: cannot start PostgreSQL as its own user"
        return None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        assert self.bin is not None
        command = [str(self.bin / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, check=False, timeout=START_LIMIT)
        if result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args[:1])} failed: {result.stderr.decode(errors='replace')}"
            )

    def create(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres")
        # No fsync: a test cluster need not survive a power cut, and it starts faster.
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off "
            f"-c max_connections={self.max_connections}"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.folder / "log"),
            "-w",
            "start",
        )

    def stop(self) -> None:
        """Fast shutdown: open connections are cut, as when the server is restarted."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)
