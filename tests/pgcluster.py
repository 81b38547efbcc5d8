"""A throwaway PostgreSQL cluster for the tests: initdb in a temporary folder, a free loopback port,
`pg_ctl start`, and `pg_ctl stop` at the end of the session; each test gets a database of its own.

Debian puts the server's programs in /usr/lib/postgresql/<version>/bin (the newest is taken); else
they are looked up on PATH. As root, the cluster runs as the `postgres` user (the server refuses root).
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

_DEBIAN = Path("/usr/lib/postgresql")


def pg_bindir() -> Path:
    """The folder holding initdb, pg_ctl and postgres."""
    if _DEBIAN.is_dir():
        versions = sorted(
            (p for p in _DEBIAN.iterdir() if (p / "bin" / "initdb").is_file() and p.name.isdigit()),
            key=lambda p: int(p.name),
        )
        if versions:
            return versions[-1] / "bin"
    found = shutil.which("initdb")
    if found is not None:
        return Path(found).resolve().parent
    raise RuntimeError(
        "PostgreSQL's server programs (initdb, pg_ctl) are not installed:"
        " apt-get install --no-install-recommends postgresql"
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Cluster:
    """A running cluster; `database()` makes an empty database and returns its URL."""

    def __init__(self, home: Path, port: int) -> None:
        self.home = home
        self.port = port
        self._names = itertools.count(1)

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def database(self) -> str:
        name = f"t{next(self._names)}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    bindir = pg_bindir()
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    home = Path(tempfile.mkdtemp(prefix="mse-pg-"))
    if as_user:
        shutil.chown(home, "postgres")
    data = home / "data"
    run = {"check": True, "capture_output": True, "cwd": "/"}
    subprocess.run(
        [*as_user, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"], **run
    )
    pg_ctl = [*as_user, str(bindir / "pg_ctl"), "-D", str(data)]
    port = 0
    for _ in range(5):  # another process may take the free port before the server binds it
        port = _free_port()
        options = f"-p {port} -k {home} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        started = subprocess.run(
            [*pg_ctl, "-o", options, "-l", str(home / "server.log"), "-w", "start"],
            capture_output=True,
            cwd="/",
            check=False,
        )
        if started.returncode == 0:
            break
    else:
        log = (home / "server.log").read_text(errors="replace")
        shutil.rmtree(home, ignore_errors=True)
        raise RuntimeError(f"the PostgreSQL test cluster did not start:\n{log}")
    try:
        yield Cluster(home, port)
    finally:
        subprocess.run([*pg_ctl, "-m", "immediate", "stop"], check=False, capture_output=True, cwd="/")
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def pg_url(pg_cluster: Cluster) -> str:
    """The URL of an empty database of this test's own."""
    return pg_cluster.database()
