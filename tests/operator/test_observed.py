"""A session's `observed` log (`GET /v1/operators/{sid}`): one entry per seat it was given, saying which
run it is (goal, project root, work dir, task metadata), every field bounded, as upstream defines it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from mlua_swarm.operator import OperatorClient
from mlua_swarm.operator.hub import OBSERVED_METADATA_CAP, OBSERVED_RING, RunBrief, observed_entry
from tests.serverkit import LiveServer, start_server

from .helpers import operator_blueprint, server_launch


def observed(http: httpx.Client, joined: dict[str, Any]) -> dict[str, Any]:
    mine = http.get(f"/v1/operators/{joined['sid']}", headers={"authorization": f"Bearer {joined['token']}"})
    assert mine.status_code == 200, mine.text
    info: dict[str, Any] = mine.json()
    return info


async def test_each_seat_given_at_launch_is_logged_with_the_run_it_belongs_to(
    live_server: LiveServer, tmp_path: Path
) -> None:
    http = live_server.client()
    joined = http.post("/v1/operators", json={"desc": "observer"}).json()
    raw = operator_blueprint("lead:plan", "review:check", seats=("lead", "review"))
    run_id = await server_launch(
        live_server,
        raw,
        sid=joined["sid"],
        slot="lead",
        goal="ship the parser",
        project_root=str(tmp_path),
        work_dir=str(tmp_path / "work"),
        task_metadata={"ticket": 42},
    )
    info = observed(http, joined)
    http.post(f"/v1/runs/{run_id}/cancel")
    assert info["observed_total"] == 2
    assert [(e["run_id"], e["slot"]) for e in info["observed"]] == [(run_id, "lead"), (run_id, "review")]
    entry = info["observed"][0]
    assert {k: v for k, v in entry.items() if k != "at_secs"} == {
        "run_id": run_id,
        "slot": "lead",
        "goal": "ship the parser",
        "project_root": str(tmp_path),
        "work_dir": str(tmp_path / "work"),
        "task_metadata": {"ticket": 42},
        "task_metadata_omitted": False,
        "text_truncated": False,
    }
    assert isinstance(entry["at_secs"], int)


async def test_taking_the_same_seat_again_moves_its_entry_instead_of_adding_one(live_server: LiveServer) -> None:
    http = live_server.client()
    raw = operator_blueprint("lead:plan", seats=("lead",))
    async with OperatorClient(live_server.base_url, desc="keeper") as op:
        first = await server_launch(live_server, raw, sid=op.sid, goal="first run")
        second = await server_launch(live_server, raw, sid=op.sid, goal="second run")
        await op.acquire(first, "back to the first")
        info = await op.info()
        for run_id in (first, second):
            http.post(f"/v1/runs/{run_id}/cancel")
    assert info["observed_total"] == 3
    assert [(e["run_id"], e["goal"]) for e in info["observed"]] == [(second, "second run"), (first, "first run")]


async def test_a_seat_taken_after_a_restart_reads_the_run_from_the_store(tmp_path: Path) -> None:
    first = start_server(tmp_path)
    try:
        http = first.client()
        holder = http.post("/v1/operators", json={"desc": "before"}).json()
        run_id = await server_launch(
            first, operator_blueprint("lead:plan", seats=("lead",)), sid=holder["sid"], goal="outlive me"
        )
    finally:
        first.stop()
    second = start_server(tmp_path)
    try:
        http = second.client()
        joined = http.post("/v1/operators", json={"desc": "after"}).json()
        taken = http.post(f"/v1/runs/{run_id}/acquire", json={"op": joined["sid"], "desc": "taking over"})
        assert taken.status_code == 200, taken.text
        [entry] = observed(http, joined)["observed"]
    finally:
        second.stop()
    assert (entry["run_id"], entry["slot"], entry["goal"]) == (run_id, "lead", "outlive me")


def test_long_text_is_cut_at_a_character_and_large_metadata_dropped_before_it_is_kept() -> None:
    goal = "é" * 600  # 1,200 bytes: the cut must not split a character
    brief = RunBrief.bounded(goal, "/p", None, {"blob": "x" * OBSERVED_METADATA_CAP})
    entry = observed_entry("R-1", "lead", brief, 7)
    cut = entry["goal"]
    assert cut.endswith("…") and cut[:-1] == "é" * 512 and len(cut[:-1].encode()) == 1024
    assert entry["text_truncated"] is True and entry["project_root"] == "/p" and entry["work_dir"] is None
    assert entry["task_metadata"] is None and entry["task_metadata_omitted"] is True
    small = observed_entry("R-1", "lead", RunBrief.bounded("g", None, None, {"k": 1}), 7)
    assert small["text_truncated"] is False and small["task_metadata"] == {"k": 1}
    assert small["task_metadata_omitted"] is False


async def test_the_log_keeps_the_newest_entries(live_server: LiveServer) -> None:
    http = live_server.client()
    joined = http.post("/v1/operators", json={"desc": "busy"}).json()
    raw = operator_blueprint("lead:plan", seats=("lead",))
    runs = [await server_launch(live_server, raw, sid=joined["sid"], goal=f"run {i}") for i in range(OBSERVED_RING + 2)]
    info = observed(http, joined)
    for run_id in runs:
        http.post(f"/v1/runs/{run_id}/cancel")
    assert info["observed_total"] == OBSERVED_RING + 2
    assert [e["run_id"] for e in info["observed"]] == runs[2:]
