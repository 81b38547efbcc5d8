"""Slice C: coroutines carry the budget hook, and the Lua → JSON conversion is bounded by output size.

A script that escapes the hook never returns, so each escape test runs in a child interpreter with a
deadline: a hang fails the test instead of stalling the suite.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ..conftest import mse_env

ESCAPES = {
    "wrap": "coroutine.wrap(function() while true do end end)()",
    "create": "coroutine.resume(coroutine.create(function() while true do end end))",
    "nested": "coroutine.wrap(function() coroutine.wrap(function() while true do end end)() end)()",
    "pcall-in-coroutine": "coroutine.wrap(function() pcall(function() while true do end end) end)()",
    "yielding": "local g = coroutine.wrap(function() while true do coroutine.yield() end end) while true do g() end",
}


def child(code: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=mse_env(),
        timeout=timeout,
    )


@pytest.mark.parametrize("limit", ["instructions", "wall", "signal"])
@pytest.mark.parametrize("name", sorted(ESCAPES))
def test_a_loop_inside_a_coroutine_is_stopped(name: str, limit: str) -> None:
    limits = {
        "instructions": "LuaLimits(instructions=2_000_000, wall_secs=None)",
        "wall": "LuaLimits(instructions=None, wall_secs=0.2)",
        "signal": "LuaLimits(instructions=None, wall_secs=None)",
    }[limit]
    proc = child(
        f"""
        import threading
        from mlua_swarm.dsl.sandbox import AbortSignal, LuaAborted, LuaLimits, LuaSandbox
        signal = AbortSignal()
        if {limit!r} == "signal":
            threading.Timer(0.2, signal.fire).start()
        try:
            LuaSandbox().run({ESCAPES[name]!r}, "=spin", signal=signal, limits={limits})
        except LuaAborted as exc:
            print("aborted:", exc.reason)
        """
    )
    assert proc.returncode == 0, proc.stderr
    expected = {"instructions": "budget", "wall": "timeout", "signal": "cancelled"}[limit]
    assert proc.stdout.strip() == f"aborted: {expected}"


def test_coroutines_still_work(tmp_path: Path) -> None:
    from mlua_swarm.dsl.sandbox import LuaSandbox

    source = """
      local gen = coroutine.wrap(function() for i = 1, 3 do coroutine.yield(i) end end)
      local co = coroutine.create(function(a) local b = coroutine.yield(a + 1) return b * 2 end)
      local _, first = coroutine.resume(co, 1)
      local _, second = coroutine.resume(co, 10)
      local ok, err = pcall(coroutine.wrap(function() error("boom") end))
      return {gen(), gen(), gen(), first, second, ok, coroutine.status(co), err:match("boom") ~= nil}
    """
    assert LuaSandbox().run(source, "=co").value == [1, 2, 3, 2, 20, False, "dead", True]


def test_mse_bp_lint_on_a_coroutine_loop_returns(tmp_path: Path) -> None:
    script = ESCAPES["wrap"] + "\nreturn {id = 'x', flow = {kind = 'seq', children = {}}}\n"
    (tmp_path / "spin.bp.lua").write_text(script)
    proc = subprocess.run(
        [sys.executable, "-m", "mlua_swarm", "bp", "lint", "spin.bp.lua"],
        capture_output=True,
        text=True,
        env=mse_env(),
        cwd=tmp_path,
        timeout=90,
    )
    assert proc.returncode == 2 and "budget exceeded" in proc.stderr and "Traceback" not in proc.stderr


def test_ctrl_c_stops_mse_run_with_a_coroutine_loop(tmp_path: Path) -> None:
    bp = {
        "id": "spin",
        "flow": {"kind": "step", "ref": "spin", "in": {"op": "path", "at": "$"}, "out": {"op": "path", "at": "$.r"}},
        "agents": [
            {
                "name": "spin",
                "kind": "lua",
                "spec": {"source": "host_ready = 1\n" + ESCAPES["wrap"], "limits": {"instructions": None}},
            }
        ],
    }
    (tmp_path / "bp.json").write_text(json.dumps(bp))
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlua_swarm", "run", "bp.json", "--ephemeral"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=mse_env({"MSE_HOME": str(tmp_path / "home")}),
        cwd=tmp_path,
    )
    try:
        assert proc.stderr is not None
        # The progress line for the step start is printed before the worker spins.
        line = proc.stderr.readline()
        assert "spin" in line
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130


# ── Lua → JSON conversion bounded by output size ─────────────────────────────

FANOUT = """
local leaf = {}
for i = 1, 64 do leaf[i] = "xxxxxxxx" end
local level = leaf
for _ = 1, 4 do
  local up = {}
  for i = 1, 64 do up[i] = level end
  level = up
end
"""


def test_a_shared_subtable_cannot_blow_up_the_conversion() -> None:
    proc = child(
        f"""
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
        from mlua_swarm.dsl.sandbox import LuaSandbox, LuaScriptError
        try:
            LuaSandbox().run({FANOUT + "return level"!r}, "=bomb")
        except LuaScriptError as exc:
            print(exc.message)
        """,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "larger than 16 MiB" in proc.stdout


def test_a_lua_worker_returning_a_bomb_fails_its_step(tmp_path: Path) -> None:
    bp = {
        "id": "bomb",
        "flow": {"kind": "step", "ref": "bomb", "in": {"op": "path", "at": "$"}, "out": {"op": "path", "at": "$.r"}},
        "agents": [{"name": "bomb", "kind": "lua", "spec": {"source": FANOUT + "return level"}}],
    }
    (tmp_path / "bp.json").write_text(json.dumps(bp))
    proc = child(
        f"""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
        from mlua_swarm.cli.main import main
        sys.exit(main(["run", {str(tmp_path / "bp.json")!r}, "--ephemeral", "--json"]))
        """,
        timeout=60,
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "larger than 16 MiB" in json.loads(proc.stdout)["error"]["message"]


def test_bp_build_of_a_bomb_is_a_diagnostic(tmp_path: Path) -> None:
    script = FANOUT + "return {id = 'x', flow = {kind = 'seq', children = {}}, metadata = {b = level}}\n"
    (tmp_path / "bomb.bp.lua").write_text(script)
    proc = child(
        f"""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
        from mlua_swarm.cli.main import main
        sys.exit(main(["bp", "build", {str(tmp_path / "bomb.bp.lua")!r}]))
        """,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "larger than 16 MiB" in proc.stderr and "Traceback" not in proc.stderr


def test_a_table_that_contains_itself_is_a_script_error() -> None:
    from mlua_swarm.dsl.sandbox import LuaSandbox, LuaScriptError

    with pytest.raises(LuaScriptError, match="contains itself"):
        LuaSandbox().run("local t = {} t[1] = t return t", "=cycle")
