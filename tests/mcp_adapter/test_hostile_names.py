"""Names a Blueprint carries that `mse mcp` turns into paths, through a real `mse mcp` over stdio."""

from __future__ import annotations

import json
from pathlib import Path

from tests.mcp_adapter.conftest import mse_mcp, payload

WRAPPER = "---\nname: {name}\ntools: [{tool}]\n---\nbody\n"


def operator_bp(variant: str) -> dict[str, object]:
    return {
        "id": "drift",
        "operators": [{"name": "main-ai"}],
        "flow": {"kind": "step", "ref": "a", "in": {"op": "path", "at": "$"}, "out": {"op": "path", "at": "$.a"}},
        "agents": [
            {
                "name": "a",
                "kind": "operator",
                "spec": {"operator_ref": "main-ai"},
                "profile": {"tools": ["Read"]},
                "runner": {"backend": "ws_operator", "variant": variant, "tools": ["Read"]},
            }
        ],
    }


async def test_a_worker_variant_cannot_read_a_wrapper_outside_the_wrapper_folder(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / ".claude" / "agents").mkdir(parents=True)
    (project / ".claude" / "agents" / "claude.md").write_text(WRAPPER.format(name="claude", tool="Read"))
    (tmp_path / "outside.md").write_text(WRAPPER.format(name="outside", tool="SECRET_TOOL"))
    (project / "inside.json").write_text(json.dumps(operator_bp("claude")))
    (project / "escape.json").write_text(json.dumps(operator_bp("../../../outside")))
    async with mse_mcp(project) as client:
        inside = payload(await client.call_tool("bp_explain_agent", {"path": "inside.json", "agent": "a"}))
        assert inside["wrapper_missing"] is False and inside["tool_drift"]["matched"] == ["Read"]
        escape = payload(await client.call_tool("bp_explain_agent", {"path": "escape.json", "agent": "a"}))
        assert escape["wrapper_missing"] is True and escape["tool_drift"] is None
        assert "'..' is not allowed" in escape["wrapper_error"]
        assert "SECRET_TOOL" not in json.dumps(escape)
