"""A `.bp.lua` Blueprint with Lua agents compiled and run in-process through the whole stack."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlua_swarm.blueprint.compiler import compile_blueprint
from mlua_swarm.run import RunResult, run_blueprint

from .dsl_helpers import build

AGENTS = """
  agents = {
    { name = "check", kind = "lua", spec = { source = [[
        local verdict = _CTX.score >= 5 and "PASS" or "FAIL"
        mse.stage("verdict", verdict)
        return { score = _CTX.score, tone = _AGENT_CTX.tone, reviewer = _AGENT_CTX.reviewer }
      ]] }, meta = { ctx = { reviewer = "lua-bot" } } },
    { name = "fix", kind = "lua", spec = { source = "return { score = _CTX.out.score + 2 }" } },
    { name = "ship", kind = "lua", spec = { source = "return 'shipped ' .. _CTX.out.score" } },
  },
  default_agent_ctx = { tone = "terse" },
"""

# The retry loop re-runs `check` with its original input, so `fix` writes its result there.
PIPELINE = f"""
return B.bp {{
  id = "lua-e2e",
  flow = B.pipeline {{
    B.stage "check" {{ agent = "check", input = "$.d.work",
      retry = {{ max = 3, fix = B.stage "fix" {{ agent = "fix", input = B.from "check", out = "$.d.work" }} }} }},
    B.stage "ship" {{ agent = "ship", input = B.from "check" }},
    halt_on = {{ "FAIL" }},
    done = "$.done",
  }},
  {AGENTS}
}}
"""


async def run(script: str, init_ctx: Any) -> RunResult:
    value = build(script).value
    compiled = compile_blueprint(value, base_dir=Path.cwd())
    return await run_blueprint(compiled, init_ctx)


async def test_a_retry_pipeline_of_lua_agents_runs_to_done() -> None:
    result = await run(PIPELINE, {"d": {"work": {"score": 1}}})
    assert result.status == "done", result.error
    ctx = result.final_ctx
    assert ctx["check"] == {
        "out": {"score": 5, "tone": "terse", "reviewer": "lua-bot"},
        "parts": {"verdict": "PASS"},
    }
    assert ctx["check_n"] == 2
    assert ctx["ship"] == "shipped 5"
    assert ctx["done"] is True


async def test_the_pipeline_halts_when_retries_run_out() -> None:
    result = await run(PIPELINE, {"d": {"work": {"score": -10}}})
    assert result.status == "done", result.error
    ctx = result.final_ctx
    assert ctx["halted_at"] == "check"
    assert ctx["check"]["parts"]["verdict"] == "FAIL"
    assert ctx["check_n"] == 3
    assert "ship" not in ctx and "done" not in ctx


async def test_a_lua_error_fails_the_run_naming_the_step() -> None:
    script = """
return B.bp {
  id = "boom",
  flow = F.step { agent = "boom", input = F.p "$.d", out = F.p "$.r" },
  agents = { { name = "boom", kind = "lua", spec = { source = "local t = nil\\nreturn t.x", label = "boom.lua" } } },
}
"""
    result = await run(script, {"d": 1})
    assert result.status == "failed"
    assert result.error is not None
    assert result.error["failed_step"] == "boom"
    assert "lua eval [boom.lua]: boom.lua:2: attempt to index a nil value" in result.error["message"]
