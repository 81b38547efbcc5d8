"""`mse runs list` answers from one read-only query (`store.listing`) when opening the store would
change nothing, and prints byte for byte what opening the store and listing it prints; every other
case (a run still `running`, another schema version, a bad or missing file) opens the store as before."""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from mlua_swarm.cli import runs as runs_cli
from mlua_swarm.cli.main import build_parser
from mlua_swarm.store import RunOwner, RunStatus, SqliteStore, store_from_url
from mlua_swarm.store.listing import RUN_STATUSES, local_store_file, quick_run_list
from mlua_swarm.store.owner import current_owner
from mlua_swarm.store.schema import SCHEMA_VERSION, migrate

from ..conftest import mse_modules, run_mse
from ..store.conftest import new_run

LISTINGS: list[list[str]] = [
    [],
    ["--json"],
    ["--limit", "3"],
    ["--limit", "0", "--json"],
    ["--status", "interrupted", "--json"],
    ["--status", "done", "--status", "failed"],
    ["--status", "pending", "--json"],
]

HEAVY = ("asyncio", "mlua_swarm.store.sqlite", "mlua_swarm.store.base")
"""The store's modules a listing from the read path does not load."""


def probe(words: list[str], home: Path) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """`mse WORDS` in a child interpreter, and which of the store's heavy modules it loaded."""
    proc, loaded = mse_modules(words, home)
    return proc, [m for m in HEAVY if m in loaded]


def through_the_store(words: list[str], home: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """What the command printed before it had a read path: open the store (sweep included), list it."""
    args = build_parser(["runs", "list", *words]).parse_args(
        ["runs", "list", "--store", str(home / "mse.sqlite3"), *words]
    )
    capsys.readouterr()
    code = runs_cli._run(runs_cli._list)(args)
    return code, capsys.readouterr().out


def seed_every_kind(home: Path) -> list[str]:
    """Runs in every settled status, with and without a launch snapshot, owners and heartbeats."""

    async def go() -> list[str]:
        store = SqliteStore(home / "mse.sqlite3")
        ids = []
        for target, launch in (
            (RunStatus.DONE, True),
            (RunStatus.FAILED, True),
            (RunStatus.INTERRUPTED, True),
            (RunStatus.INTERRUPTED, False),
            (RunStatus.CANCELLED, True),
            (RunStatus.DONE, False),
        ):
            run = await new_run(store) if launch else await new_run(store, None)
            await store.settle_run(run.run_id, {"ok": "ünïcode", "n": len(ids)}, target)
            ids.append(run.run_id)
        quiet = await new_run(store)
        store.set_owner(quiet.run_id, None)
        await store.try_transition(quiet.run_id, RunStatus.RUNNING, RunStatus.DONE)
        ids.append(quiet.run_id)
        await store.close()
        return ids

    return asyncio.run(go())


def test_the_read_path_prints_what_opening_the_store_prints(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ids = seed_every_kind(tmp_path)
    for words in LISTINGS:
        fast, loaded = probe(["runs", "list", *words], tmp_path)
        assert fast.returncode == 0, fast.stderr
        assert loaded == [], (words, loaded)
        code, before = through_the_store(words, tmp_path, capsys)
        assert (fast.returncode, fast.stdout) == (code, before), words
    listed = json.loads(probe(["runs", "list", "--json"], tmp_path)[0].stdout)
    assert [r["run_id"] for r in listed] == ids[::-1]
    assert [r["resumable"] for r in listed] == [False, False, False, False, True, False, False]
    assert all("result" not in r for r in listed)
    assert listed[0]["owner"] is None and listed[1]["owner"]["pid"] > 0


def test_an_empty_store_and_a_limit_beyond_it(tmp_path: Path) -> None:
    SqliteStore(tmp_path / "mse.sqlite3").close_sync()
    listed, loaded = probe(["runs", "list"], tmp_path)
    assert (listed.returncode, listed.stdout, loaded) == (0, "no runs\n", [])
    listed, loaded = probe(["runs", "list", "--json", "--limit", "5"], tmp_path)
    assert (listed.returncode, listed.stdout, loaded) == (0, "[]\n", [])


def test_a_running_run_makes_the_listing_open_the_store(tmp_path: Path) -> None:
    """Opening the store sweeps `running` runs whose owner is gone, so the read path steps aside."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()

    async def seed() -> tuple[str, str]:
        store = SqliteStore(tmp_path / "mse.sqlite3")
        orphan, alive = await new_run(store), await new_run(store)
        me = current_owner()
        store.set_owner(orphan.run_id, RunOwner(me.host, dead.pid, me.started_at))
        await store.close()
        return orphan.run_id, alive.run_id

    orphan, alive = asyncio.run(seed())
    listed, loaded = probe(["runs", "list", "--json"], tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "asyncio" in loaded
    assert [(r["run_id"], r["status"]) for r in json.loads(listed.stdout)] == [
        (alive, "running"),
        (orphan, "interrupted"),
    ]


def test_an_older_schema_is_migrated_by_opening_the_store(tmp_path: Path) -> None:
    path = tmp_path / "mse.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    migrate(conn, str(path), target=SCHEMA_VERSION - 1)
    conn.execute(
        "INSERT INTO runs (id, task_id, status, created_at, updated_at) VALUES ('R-old', 'T-old', 'done', 1.5, 2.5)"
    )
    conn.close()
    listed, loaded = probe(["runs", "list", "--json"], tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "mlua_swarm.store.sqlite" in loaded
    assert [(r["run_id"], r["status"], r["created_at"]) for r in json.loads(listed.stdout)] == [("R-old", "done", 1.5)]
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()


def test_files_the_read_path_cannot_list_keep_their_diagnostics(tmp_path: Path) -> None:
    newer = tmp_path / "newer"
    newer.mkdir()
    SqliteStore(newer / "mse.sqlite3").close_sync()
    conn = sqlite3.connect(newer / "mse.sqlite3")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    empty = tmp_path / "empty.sqlite3"
    empty.write_bytes(b"")
    garbage = tmp_path / "garbage.sqlite3"
    garbage.write_bytes(b"this is not a database, " * 100)
    folder = tmp_path / "folder.sqlite3"
    folder.mkdir()
    for store, code in (
        (str(newer / "mse.sqlite3"), "store_schema_too_new"),
        (str(empty), "store_unusable"),
        (f"sqlite://{garbage}", "store_unusable"),
        (str(folder), "store_unusable"),
        ("ftp://x", "bad_store_url"),
        ("sqlite://", "bad_store_url"),
    ):
        refused = run_mse(["runs", "list", "--json", "--store", store], env={"MSE_HOME": str(tmp_path)})
        assert refused.returncode == 2, (store, refused.stderr)
        assert json.loads(refused.stdout)["error"]["code"] == code, store
        assert f"error[{code}]" in refused.stderr and "Traceback" not in refused.stderr
    assert empty.read_bytes() == b""


def test_a_missing_store_is_created_by_the_first_listing(tmp_path: Path) -> None:
    home = tmp_path / "new-home"
    listed, loaded = probe(["runs", "list"], home)
    assert (listed.returncode, listed.stdout) == (0, "no runs\n")
    assert "mlua_swarm.store.sqlite" in loaded
    assert (home / "mse.sqlite3").is_file()
    assert probe(["runs", "list"], home)[1] == []


def test_the_read_path_names_the_file_opening_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MSE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    for url in (
        None,
        "",
        str(tmp_path / "a.sqlite3"),
        f"sqlite://{tmp_path}/b.sqlite3",
        "~/c.sqlite3",
        "sqlite://~/d.db",
    ):
        store = store_from_url(url)
        assert isinstance(store, SqliteStore)
        assert local_store_file(url) == str(store.path), url
        store.close_sync()
    for url in ("memory://", "memory:", "memory", "sqlite://", "postgres://h/db", "ftp://x"):
        assert local_store_file(url) is None, url
    assert quick_run_list("memory://") is None


def test_status_choices_are_the_run_statuses() -> None:
    assert tuple(s.value for s in RunStatus) == RUN_STATUSES
    parser = build_parser(["runs", "list"])
    with pytest.raises(SystemExit):
        parser.parse_args(["runs", "list", "--status", "finished"])
    assert isinstance(parser.parse_args(["runs", "list", "--status", "done"]), argparse.Namespace)
