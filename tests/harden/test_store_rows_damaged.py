"""A store whose tables or rows were damaged or edited by hand is a `store_unusable` message naming
the file, for every command that reads it: never a traceback, never a misleading `bad_arguments`."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import pytest

from ..conftest import run_mse

BP = {
    "id": "t",
    "flow": {"kind": "step", "ref": "a", "in": {"op": "path", "at": "$"}, "out": {"op": "path", "at": "$.y"}},
    "agents": [{"name": "a", "kind": "rust_fn", "spec": {"fn_id": "identity"}}],
}

DAMAGE = {
    "a dropped table": "DROP TABLE runs",
    "an owner pid that is not a number": "UPDATE runs SET owner_pid = '{not a pid'",
    "an unknown status": "UPDATE runs SET status = 'weird'",
}


def mse(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """`mse` run in `cwd`, with its home there."""
    return run_mse(args, env={"MSE_HOME": str(cwd / "home")}, cwd=cwd)


@pytest.fixture(scope="module")
def stored_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A store holding one finished run, made by `mse run`."""
    folder = tmp_path_factory.mktemp("store")
    (folder / "bp.json").write_text(json.dumps(BP))
    proc = mse(["run", "bp.json", "--store", "good.sqlite3", "--json"], folder)
    assert proc.returncode == 0, proc.stderr
    return folder / "good.sqlite3", json.loads(proc.stdout)["run_id"]


@pytest.mark.parametrize("damage", DAMAGE.values(), ids=DAMAGE.keys())
def test_every_reading_command_names_the_damaged_store(
    tmp_path: Path, stored_run: tuple[Path, str], damage: str
) -> None:
    good, run_id = stored_run
    store = tmp_path / "damaged.sqlite3"
    store.write_bytes(good.read_bytes())
    with sqlite3.connect(store) as conn:
        conn.execute(damage)
    conn.close()
    commands = [
        ["runs", "list"],
        ["runs", "list", "--json"],
        ["runs", "show", run_id],
        ["runs", "steps", run_id],
        ["runs", "trace", run_id],
        ["runs", "resume", run_id],
        ["runs", "rerun-from", run_id, "a"],
    ]
    if damage.startswith("DROP"):
        commands.append(["run", str(tmp_path / "bp.json")])
        (tmp_path / "bp.json").write_text(json.dumps(BP))
    for command in commands:
        proc = mse([*command, "--store", str(store)], tmp_path)
        assert proc.returncode == 2, (command, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr, (command, proc.stderr)
        assert "store_unusable" in proc.stderr + proc.stdout, (command, proc.stderr)
        assert "damaged.sqlite3 holds data this mlua-swarm cannot read" in proc.stderr + proc.stdout, command


def test_a_bad_run_id_is_still_the_callers_mistake(tmp_path: Path, stored_run: tuple[Path, str]) -> None:
    good, _ = stored_run
    for command in (["runs", "show", "nope"], ["runs", "resume", "nope"]):
        proc = mse([*command, "--store", str(good)], tmp_path)
        assert proc.returncode == 2 and 'invalid run id "nope"' in proc.stderr, (command, proc.stderr)
