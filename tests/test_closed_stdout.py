"""`mse` writing into a pipe whose reader is gone (`mse runs list | head -1`) exits 141 without a traceback."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from mlua_swarm.cli.main import EXIT_STDOUT_CLOSED
from mlua_swarm.store import LaunchSnapshot, SqliteStore, create_run

from .conftest import mse_env

MSE = [sys.executable, "-m", "mlua_swarm"]


def _seed(home: Path, count: int) -> None:
    async def go() -> None:
        store = SqliteStore(home / "mse.sqlite3")
        launch = LaunchSnapshot({"name": "demo", "flow": {"kind": "step", "ref": "a"}}, {}, {})
        for _ in range(count):
            await create_run(store, launch, goal="seeded")
        await store.close()

    asyncio.run(go())


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["runs", "list"], EXIT_STDOUT_CLOSED),
        (["runs", "list", "--json"], EXIT_STDOUT_CLOSED),
        (["bp", "schema"], EXIT_STDOUT_CLOSED),
        # argparse's help drops a failed write itself and exits 0.
        (["--help"], 0),
        (["runs", "--help"], 0),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else str(value),
)
def test_a_reader_gone_before_the_first_write_ends_the_command_quietly(
    tmp_path: Path, args: list[str], code: int
) -> None:
    _seed(tmp_path, 3)
    child = subprocess.Popen(
        [*MSE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=mse_env({"MSE_HOME": str(tmp_path)})
    )
    assert child.stdout is not None and child.stderr is not None
    child.stdout.close()
    stderr = child.stderr.read()
    assert child.wait(timeout=120) == code, stderr
    assert stderr == b""


def test_runs_list_piped_into_head_prints_one_line_and_no_traceback(tmp_path: Path) -> None:
    # Enough runs that the listing outgrows the pipe's buffer: `mse` is still writing when head exits.
    _seed(tmp_path, 1500)
    shell = 'set -o pipefail; "$@" runs list | head -1'
    done = subprocess.run(
        ["bash", "-c", shell, "bash", *MSE],
        capture_output=True,
        env=mse_env({"MSE_HOME": str(tmp_path)}),
        timeout=120,
    )
    assert done.stdout.decode().split() == ["RUN", "TASK", "STATUS", "CREATED", "(UTC)"]
    assert done.stderr == b""
    assert done.returncode == EXIT_STDOUT_CLOSED
