"""Tools that need no server, through a real `mse mcp` over stdio."""

from __future__ import annotations

import json
from pathlib import Path

from tests.mcp_adapter.conftest import error_text, mse_mcp, payload

FN_BP = {
    "id": "echo",
    "flow": {
        "kind": "step",
        "ref": "upper",
        "in": {"op": "path", "at": "$.text"},
        "out": {"op": "path", "at": "$.out"},
    },
    "agents": [{"name": "upper", "kind": "lua", "spec": {"source": "return string.upper(_PROMPT)"}}],
}


async def test_blueprint_authoring_without_server(tmp_path: Path) -> None:
    async with mse_mcp(tmp_path) as client:
        schema = payload(await client.call_tool("bp_schema", {}))
        assert "agents" in schema["properties"]
        new = payload(
            await client.call_tool("bp_new", {"template": "pipeline", "name": "notes", "out": "notes.bp.lua"})
        )
        assert Path(new["path"]) == tmp_path / "notes.bp.lua"
        built = payload(await client.call_tool("bp_build", {"script_path": "notes.bp.lua", "register": False}))
        assert built["status"] == "ok" and built["blueprint"]["id"] == "notes"
        doctor = payload(await client.call_tool("bp_doctor", {"path": "notes.bp.lua"}))
        assert doctor["compiles"] and doctor["verdict"] == "OK"
        assert {a["name"] for a in doctor["agents"]} == {"draft", "review", "publish"}
        explained = payload(await client.call_tool("bp_explain_agent", {"path": "notes.bp.lua", "agent": "review"}))
        assert explained["kind"] == "lua" and explained["tool_drift"] is None
        rows = payload(await client.call_tool("bp_explain_agents", {"path": "notes.bp.lua"}))
        assert [r["agent"] for r in rows["agents"]] == ["draft", "review", "publish"]


async def test_swarm_run_inline_and_file(tmp_path: Path) -> None:
    (tmp_path / "echo.json").write_text(json.dumps(FN_BP))
    async with mse_mcp(tmp_path) as client:
        inline = payload(
            await client.call_tool(
                "swarm_run", {"blueprint": {"kind": "inline", "blueprint": FN_BP}, "init_ctx": {"text": "hi"}}
            )
        )
        assert inline["status"] == "done" and inline["final_ctx"]["out"] == "HI"
        bare = payload(await client.call_tool("swarm_run", {"blueprint": FN_BP, "init_ctx": {"text": "bare"}}))
        assert bare["final_ctx"]["out"] == "BARE"
        from_file = payload(
            await client.call_tool(
                "swarm_run", {"blueprint": {"kind": "file", "path": "echo.json"}, "init_ctx": {"text": "f"}}
            )
        )
        assert from_file["final_ctx"]["out"] == "F"
        status = payload(await client.call_tool("swarm_status", {"run_id": from_file["run_id"]}))
        assert status["status"] == "done" and status["steps_done"] == 1
        stats = payload(await client.call_tool("swarm_run_stats", {"run_id": from_file["run_id"]}))
        assert stats["totals"]["steps_total"] == 1 and stats["steps"][0]["step_ref"] == "upper"


async def test_bad_arguments_are_tool_errors_with_hints(tmp_path: Path) -> None:
    async with mse_mcp(tmp_path) as client:
        unknown = error_text(await client.call_tool("swarm_run", {"blueprint": FN_BP, "timeout": 5}))
        assert "timeout: unknown argument" in unknown and "timeout_secs" in unknown and "hint:" in unknown
        missing = error_text(await client.call_tool("bp_build", {}))
        assert "script_path: required" in missing and "hint:" in missing
        wrong = error_text(await client.call_tool("bp_new", {"template": "nope", "name": "x"}))
        assert "template" in wrong and "pipeline" in wrong
        selector = error_text(await client.call_tool("swarm_run", {"blueprint": {"kind": "id"}}))
        assert "hint:" in selector
        bad_id = error_text(await client.call_tool("swarm_status", {"run_id": "T-123"}))
        assert "run_id" in bad_id
        no_file = error_text(await client.call_tool("bp_build", {"script_path": "missing.bp.lua"}))
        assert "[file-not-found]" in no_file and "hint:" in no_file
        invalid = error_text(
            await client.call_tool("swarm_run", {"blueprint": {"kind": "inline", "blueprint": {"id": "x", "flow": 3}}})
        )
        assert "[invalid-blueprint]" in invalid and "hint:" in invalid
        # The adapter survived every refusal.
        assert payload(await client.call_tool("bp_schema", {}))
