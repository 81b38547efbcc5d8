"""`mse mcp` over stdio against a real `mse serve` child: register, run by id, drive the operator loop."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import anyio
import httpx
from mcp import Client

from tests.mcp_adapter.conftest import error_text, mse_mcp, payload
from tests.process.helpers import watch_exit
from tests.serverkit import ServeProcess

UPSTREAM_TOOLS = {
    "swarm_run",
    "swarm_status",
    "swarm_cancel",
    "swarm_run_stats",
    "bp_schema",
    "bp_new",
    "bp_build",
    "bp_doctor",
    "bp_explain_agent",
    "bp_explain_agents",
    "bp_archive",
    "bp_unarchive",
    "mse_operator_join",
    "mse_operator_leave",
    "mse_operator_list",
    "mse_pending_wait",
    "mse_ack",
    "mse_run_assignees",
    "mse_run_handover",
    "mse_run_material",
    "mse_run_acquire",
    "mse_worker_fetch",
    "mse_worker_submit",
    "mse_doctor",
}

UPPER_LUA = """return {
  id = "shout",
  flow = { kind = "step", ref = "up", ["in"] = { op = "path", at = "$.text" }, out = { op = "path", at = "$.loud" } },
  agents = { { name = "up", kind = "lua", spec = { source = "return string.upper(_PROMPT)" } } },
}
"""


def work_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "work"
    folder.mkdir(exist_ok=True)
    return folder


async def test_tool_list_is_upstreams(tmp_path: Path) -> None:
    async with mse_mcp(tmp_path) as client:
        listed = await client.list_tools()
        assert {tool.name for tool in listed.tools} == UPSTREAM_TOOLS
        for tool in listed.tools:
            assert tool.description and "Example arguments:" in tool.description, tool.name
            assert tool.input_schema.get("additionalProperties") is False, tool.name


async def test_build_register_and_run_inline_and_by_id(served: ServeProcess, tmp_path: Path) -> None:
    folder = work_dir(tmp_path)
    (folder / "shout.bp.lua").write_text(UPPER_LUA)
    async with mse_mcp(folder, {"MSE_HTTP": served.base_url}) as client:
        built = payload(await client.call_tool("bp_build", {"script_path": "shout.bp.lua"}))
        assert built["blueprint_id"] == "shout" and built["registered"]["id"] == "shout"
        inline = payload(
            await client.call_tool(
                "swarm_run", {"blueprint": {"kind": "file", "path": "shout.bp.lua"}, "init_ctx": {"text": "here"}}
            )
        )
        assert inline["where"] == "local" and inline["final_ctx"]["loud"] == "HERE"
        by_id = payload(
            await client.call_tool(
                "swarm_run", {"blueprint": {"kind": "id", "id": "shout"}, "init_ctx": {"text": "there"}}
            )
        )
        assert by_id["where"] == "server" and by_id["status"] == "done"
        assert by_id["final_ctx"]["loud"] == "THERE"
        status = payload(await client.call_tool("swarm_status", {"run_id": by_id["run_id"]}))
        assert status["status"] == "done" and [s["step_ref"] for s in status["steps"]] == ["up"]
        doctor = payload(await client.call_tool("mse_doctor", {}))
        assert doctor["server"]["reachable"] and "shout" in doctor["server"]["registered_blueprint_ids"]
        assert doctor["version_drift"]["drift"] is False
        dry = payload(await client.call_tool("bp_archive", {"id": "shout"}))
        assert dry["dry_run"] is True
        payload(await client.call_tool("bp_archive", {"id": "shout", "confirm": True}))
        refused = error_text(await client.call_tool("swarm_run", {"blueprint": {"kind": "id", "id": "shout"}}))
        assert "[http-409]" in refused and "unarchive" in refused
        payload(await client.call_tool("bp_unarchive", {"id": "shout"}))
        again = payload(
            await client.call_tool("swarm_run", {"blueprint": {"kind": "id", "id": "shout"}, "init_ctx": {"text": "x"}})
        )
        assert again["final_ctx"]["loud"] == "X"


async def test_operator_loop_completes_with_the_submitted_value(served: ServeProcess, tmp_path: Path) -> None:
    folder = work_dir(tmp_path)
    async with mse_mcp(folder, {"MSE_HTTP": served.base_url}) as client:
        payload(
            await client.call_tool(
                "bp_new", {"template": "single", "name": "review", "operator": "main-ai", "out": "review.bp.lua"}
            )
        )
        payload(await client.call_tool("bp_build", {"script_path": "review.bp.lua"}))
        sid = payload(await client.call_tool("mse_operator_join", {"desc": "the MCP test driver"}))["sid"]
        await cancel_a_waiting_wait(client, sid)
        outcome: dict[str, Any] = {}
        run_progress: list[str] = []

        async def on_run_progress(progress: float, total: float | None, message: str | None) -> None:
            run_progress.append(message or "")

        async def blocking_run() -> None:
            outcome["run"] = payload(
                await client.call_tool(
                    "swarm_run",
                    {"blueprint": {"kind": "id", "id": "review"}, "init_ctx": {"d": {"input": "check the notes"}}},
                    progress_callback=on_run_progress,
                )
            )

        async with anyio.create_task_group() as tg:
            tg.start_soon(blocking_run)
            request = payload(await client.call_tool("mse_pending_wait", {"sid": sid, "timeout_ms": 60_000}))
            assert request["timed_out"] is False and request["type"] == "spawn"
            spawn = request["payload"]
            assert spawn["agent"] == "solo" and "mse_worker_fetch" in request["next"]
            handle = spawn.get("worker_handle") or spawn["capability_token"]

            work = payload(await client.call_tool("mse_worker_fetch", {"worker_handle": handle}))
            assert work["prompt"] == "check the notes" and work["agent"] == "solo"
            seats = payload(await client.call_tool("mse_run_assignees", {"run_id": work["context"]["run_id"]}))
            assert [(seat["holder"]["op"], seat["holder"]["desc"]) for seat in seats["seats"]] == [
                (sid, "the MCP test driver")
            ]
            submitted = payload(
                await client.call_tool(
                    "mse_worker_submit", {"worker_handle": handle, "body": {"verdict": "fine", "notes": 3}}
                )
            )
            assert submitted["submitted"] is True
            acked = payload(
                await client.call_tool("mse_ack", {"sid": sid, "req_id": request["req_id"], "kind": "spawn_ack"})
            )
            assert acked["sent"] is True
        run = outcome["run"]
        assert run["status"] == "done" and run["final_ctx"]["solo"] == {"verdict": "fine", "notes": 3}
        assert run_progress and all("step(s) done" in message for message in run_progress), run_progress
        listed = payload(await client.call_tool("mse_operator_list", {}))
        assert sid in [entry["sid"] for entry in listed["operators"]]
        assert payload(await client.call_tool("mse_operator_leave", {"sid": sid}))["left"] is True
        gone = error_text(await client.call_tool("mse_pending_wait", {"sid": sid, "timeout_ms": 10}))
        assert "[unknown-session]" in gone and "mse_operator_join" in gone


async def cancel_a_waiting_wait(client: Client, sid: str) -> None:
    """Start mse_pending_wait, see its progress notification, cancel the call; the adapter stays usable."""
    waiting = anyio.Event()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        if message and sid in message:
            waiting.set()

    async with anyio.create_task_group() as tg:
        scope = anyio.CancelScope()

        async def wait() -> None:
            with scope:
                await client.call_tool(
                    "mse_pending_wait", {"sid": sid, "timeout_ms": 600_000}, progress_callback=on_progress
                )

        tg.start_soon(wait)
        with anyio.fail_after(30):
            await waiting.wait()
        scope.cancel()
    quick = payload(await client.call_tool("mse_pending_wait", {"sid": sid, "timeout_ms": 0}))
    assert quick["timed_out"] is True


async def test_swarm_cancel_stops_a_child_on_the_server(served: ServeProcess, tmp_path: Path) -> None:
    folder = work_dir(tmp_path)
    fifo = folder / "pid"
    os.mkfifo(fifo)
    script = f"""return {{
  id = "sleeper",
  flow = {{ kind = "step", ref = "nap", ["in"] = {{ op = "lit", value = "x" }}, out = {{ op = "path", at = "$.b" }} }},
  agents = {{ {{ name = "nap", kind = "subprocess",
      spec = {{ program = "sh", args = {{ "-c", "echo $$ > {fifo}; exec sleep 1000" }} }} }} }},
}}
"""
    (folder / "sleeper.bp.lua").write_text(script)
    async with mse_mcp(folder, {"MSE_HTTP": served.base_url}) as client:
        payload(await client.call_tool("bp_build", {"script_path": "sleeper.bp.lua"}))
        started = payload(
            await client.call_tool("swarm_run", {"blueprint": {"kind": "id", "id": "sleeper"}, "detach": True})
        )
        assert started["status"] == "running"
        with anyio.fail_after(60):
            pid = int((await anyio.to_thread.run_sync(fifo.read_text, abandon_on_cancel=True)).strip())
        async with watch_exit(pid) as exited:
            payload(await client.call_tool("swarm_cancel", {"run_id": started["run_id"]}))
            with anyio.fail_after(30):
                await exited
        status = payload(await client.call_tool("swarm_status", {"run_id": started["run_id"]}))
        assert status["status"] == "cancelled"


async def test_server_errors_are_tool_errors_with_hints(tmp_path: Path) -> None:
    async with mse_mcp(tmp_path, {"MSE_HTTP": "http://127.0.0.1:9"}) as client:
        down = error_text(await client.call_tool("swarm_run", {"blueprint": {"kind": "id", "id": "x"}}))
        assert "[server-unreachable]" in down and "mse serve" in down
        no_session = error_text(await client.call_tool("mse_operator_list", {}))
        assert "[no-session]" in no_session and "mse_operator_join" in no_session
        stray = error_text(await client.call_tool("mse_worker_fetch", {"worker_handle": "wh-unknown"}))
        assert "[unknown-worker-handle]" in stray and "task_id" in stray
        bad_kind = error_text(await client.call_tool("mse_ack", {"sid": "S-1", "req_id": "Q-1", "kind": "spawn_done"}))
        assert "kind" in bad_kind and "spawn_ack" in bad_kind
        doctor = payload(await client.call_tool("mse_doctor", {}))
        assert doctor["server"]["reachable"] is False and doctor["server"]["hint"]


GATED_LUA = """return {
  id = "gated",
  flow = { kind = "seq", children = {
    { kind = "step", ref = "build", ["in"] = { op = "path", at = "$.version" },
      out = { op = "path", at = "$.built" } },
    { kind = "step", ref = "deploy", ["in"] = { op = "path", at = "$.built" },
      out = { op = "path", at = "$.deployed" } },
  } },
  agents = {
    { name = "build", kind = "lua", spec = { source = "return 'build ' .. _PROMPT" } },
    { name = "deploy", kind = "lua", spec = { source = "return 'deployed ' .. _PROMPT" } },
  },
  operators = { { name = "human" } },
  spawner_hints = { layers = { "main_ai" } },
}
"""


async def test_operator_kinds_decide_which_spawns_wait_for_the_operator(served: ServeProcess, tmp_path: Path) -> None:
    folder = work_dir(tmp_path)
    (folder / "gated.bp.lua").write_text(GATED_LUA)
    async with mse_mcp(folder, {"MSE_HTTP": served.base_url}) as client:
        payload(await client.call_tool("bp_build", {"script_path": "gated.bp.lua"}))
        sid = payload(await client.call_tool("mse_operator_join", {"desc": "release manager"}))["sid"]
        by_id = {"kind": "id", "id": "gated"}
        outcome: dict[str, Any] = {}

        async def blocking_run() -> None:
            arguments = {
                "blueprint": by_id,
                "init_ctx": {"version": "v7"},
                "operator_id": "release-bot",
                "operator_kind_overrides": {"build": "automate"},
            }
            outcome["run"] = payload(await client.call_tool("swarm_run", arguments))

        async with anyio.create_task_group() as tg:
            tg.start_soon(blocking_run)
            gate = payload(await client.call_tool("mse_pending_wait", {"sid": sid, "timeout_ms": 60_000}))
            assert gate["type"] == "hook_before", gate
            assert gate["payload"]["agent"] == "deploy" and gate["payload"]["prompt"] == "build v7"
            assert "hook_ack" in gate["next"]
            payload(await client.call_tool("mse_ack", {"sid": sid, "req_id": gate["req_id"], "kind": "hook_ack"}))
            after = payload(await client.call_tool("mse_pending_wait", {"sid": sid, "timeout_ms": 60_000}))
            assert after["type"] == "hook_after" and after["payload"]["agent"] == "deploy"
        assert outcome["run"]["status"] == "done"
        assert outcome["run"]["final_ctx"]["deployed"] == "deployed build v7"

        # All automate: no spawn waits for the operator (a hook_before would wait without a deadline).
        automated = payload(
            await client.call_tool(
                "swarm_run", {"blueprint": by_id, "init_ctx": {"version": "v8"}, "operator_kind": "automate"}
            )
        )
        assert automated["status"] == "done" and automated["final_ctx"]["deployed"] == "deployed build v8"
        quiet = payload(await client.call_tool("mse_pending_wait", {"sid": sid, "timeout_ms": 0}))
        assert quiet["timed_out"] is True

        bad = error_text(await client.call_tool("swarm_run", {"blueprint": by_id, "operator_kind": "boss"}))
        assert "[invalid-arguments]" in bad and "operator_kind" in bad
        local = error_text(
            await client.call_tool(
                "swarm_run", {"blueprint": {"kind": "file", "path": "gated.bp.lua"}, "operator_kind": "main_ai"}
            )
        )
        assert "[invalid-arguments]" in local and "runs by id" in local and "no operator session" in local


async def test_a_driver_that_goes_away_holding_a_spawn_is_taken_over_by_the_next(
    served: ServeProcess, tmp_path: Path
) -> None:
    folder = work_dir(tmp_path)
    env = {"MSE_HTTP": served.base_url}
    async with mse_mcp(folder, env) as first:
        payload(
            await first.call_tool(
                "bp_new", {"template": "single", "name": "note", "operator": "main-ai", "out": "note.bp.lua"}
            )
        )
        payload(await first.call_tool("bp_build", {"script_path": "note.bp.lua"}))
        sid = payload(await first.call_tool("mse_operator_join", {"desc": "the first driver"}))["sid"]
        run_id = payload(
            await first.call_tool(
                "swarm_run",
                {"blueprint": {"kind": "id", "id": "note"}, "init_ctx": {"d": {"input": "a"}}, "detach": True},
            )
        )["run_id"]
        claimed = payload(await first.call_tool("mse_pending_wait", {"sid": sid, "timeout_ms": 60_000}))
        stale_handle = claimed["payload"]["worker_handle"]
        assert payload(await first.call_tool("mse_worker_fetch", {"worker_handle": stale_handle}))["prompt"] == "a"
        wrong = error_text(await first.call_tool("mse_ack", {"sid": sid, "req_id": "Q-made-up", "kind": "spawn_ack"}))
        assert "[unknown-request]" in wrong and "mse_pending_wait" in wrong
    # The first `mse mcp` is gone with the spawn it claimed; the run waits for its seat's holder.
    async with mse_mcp(folder, env) as second:
        sid = payload(await second.call_tool("mse_operator_join", {"desc": "the second driver"}))["sid"]
        handover = payload(await second.call_tool("mse_run_handover", {"run_id": run_id}))
        assert [row["kind"] for row in handover["unanswered"]] == ["spawn"]
        assert handover["unread_seats"][0]["reason"] == "holder is not connected"
        taken = payload(await second.call_tool("mse_run_acquire", {"run_id": run_id, "desc": "the second driver"}))
        assert taken["moved"] == 1
        request = payload(await second.call_tool("mse_pending_wait", {"sid": sid, "timeout_ms": 60_000}))
        handle = request["payload"]["worker_handle"]
        assert handle != stale_handle
        moved = error_text(
            await second.call_tool(
                "mse_worker_submit", {"worker_handle": stale_handle, "body": "late", "base_url": served.base_url}
            )
        )
        assert "[http-409]" in moved and "moved to another operator" in moved
        bogus = error_text(
            await second.call_tool(
                "mse_worker_submit", {"worker_handle": "wh-0000", "body": "x", "base_url": served.base_url}
            )
        )
        assert "[http-401]" in bogus and "the worker handle is unknown or expired" in bogus
        payload(await second.call_tool("mse_worker_submit", {"worker_handle": handle, "body": "b"}))
        payload(await second.call_tool("mse_ack", {"sid": sid, "req_id": request["req_id"], "kind": "spawn_ack"}))
        async with (
            httpx.AsyncClient(base_url=served.base_url, timeout=30) as http,
            http.stream("GET", f"/v1/runs/{run_id}/events") as events,
        ):
            async for _ in events.aiter_lines():  # the stream ends with the run
                pass
        status = payload(await second.call_tool("swarm_status", {"run_id": run_id}))
        assert status["status"] == "done" and status["final_ctx"]["solo"] == "b"
