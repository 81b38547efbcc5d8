"""Slice E: an unreadable store file is a message naming it (never a traceback, never overwritten),
and prune deletes only finished runs unless asked, giving their space back."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mlua_swarm.store import LaunchSnapshot, RunStatus, SqliteStore, Store, StoreUnusable, create_run

from ..conftest import mse_env

BP = '{"id":"t","flow":{"kind":"step","ref":"a","in":{"op":"path","at":"$"},"out":{"op":"path","at":"$.y"}},'
BP += '"agents":[{"name":"a","kind":"rust_fn","spec":{"fn_id":"identity"}}]}'


def mse(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlua_swarm", *args],
        capture_output=True,
        text=True,
        env=mse_env({"MSE_HOME": str(cwd / "home")}),
        cwd=cwd,
        timeout=60,
    )


async def real_store(path: Path, runs: int = 3) -> bytes:
    store = SqliteStore(path)
    for _ in range(runs):
        await create_run(store, LaunchSnapshot({"id": "t"}, {"topic": "x" * 3000}, {}), goal="g")
    await store.close()
    return path.read_bytes()


async def damaged(kind: str, path: Path) -> None:
    if kind == "directory":
        path.mkdir()
        return
    if kind == "empty":
        path.write_bytes(b"")
        return
    if kind == "garbage":
        path.write_bytes(bytes(range(256)) * 40)
        return
    good = await real_store(path.with_suffix(".good"))
    if kind == "truncated":
        path.write_bytes(good[: len(good) // 2])
    else:
        path.write_bytes(good[:16] + b"\xff" * 84 + good[100:])


@pytest.mark.parametrize("kind", ["empty", "garbage", "bad-header", "truncated", "directory"])
async def test_an_unusable_store_file_is_a_message_and_is_left_untouched(tmp_path: Path, kind: str) -> None:
    store = tmp_path / "runs.sqlite3"
    await damaged(kind, store)
    before = None if store.is_dir() else store.read_bytes()
    (tmp_path / "bp.json").write_text(BP)
    for args in (["runs", "list"], ["run", "bp.json"], ["runs", "prune", "--keep", "0"]):
        proc = mse([*args, "--store", str(store)], tmp_path)
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert "Traceback" not in proc.stderr
        assert "store_unusable" in proc.stderr and str(store) in proc.stderr
        assert "move it aside" in proc.stderr or "directory" in proc.stderr
    if before is not None:
        assert store.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("runs.sqlite3")) == ["runs.sqlite3"]


def test_opening_an_unusable_store_raises_the_store_error(tmp_path: Path) -> None:
    store = tmp_path / "x.sqlite3"
    store.write_bytes(b"not a database at all" * 100)
    with pytest.raises(StoreUnusable, match="is not a SQLite database"):
        SqliteStore(store)


async def seed(store: Store) -> dict[RunStatus, str]:
    ids: dict[RunStatus, str] = {}
    for status in (RunStatus.DONE, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.INTERRUPTED):
        run = await create_run(store, LaunchSnapshot({"id": "t"}, {"blob": "y" * (1 << 20)}, {}), goal="g")
        assert await store.try_transition(run.run_id, RunStatus.RUNNING, status)
        ids[status] = run.run_id
    await store.flush()
    return ids


async def test_prune_keeps_interrupted_runs_unless_asked(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.sqlite3")
    try:
        ids = await seed(store)
        assert await store.prune(keep=0) == 3
        assert [r.run_id for r in await store.list_runs()] == [ids[RunStatus.INTERRUPTED]]
        assert await store.prune(keep=0, include_interrupted=True) == 1
        assert await store.list_runs() == []
    finally:
        await store.close()


async def test_mse_runs_prune_spares_interrupted_runs_and_shrinks_the_file(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    store = SqliteStore(path)
    ids = await seed(store)
    await store.close()
    size = path.stat().st_size
    assert size > 4 << 20
    pruned = mse(["runs", "prune", "--keep", "0", "--store", str(path), "--json"], tmp_path)
    assert pruned.returncode == 0, pruned.stderr
    listed = mse(["runs", "list", "--store", str(path), "--json"], tmp_path)
    assert ids[RunStatus.INTERRUPTED] in listed.stdout and ids[RunStatus.DONE] not in listed.stdout
    assert path.stat().st_size < size // 2
    everything = mse(["runs", "prune", "--keep", "0", "--interrupted", "--store", str(path)], tmp_path)
    assert everything.returncode == 0, everything.stderr
    assert path.stat().st_size < 1 << 20
