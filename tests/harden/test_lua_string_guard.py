"""Lua's C string matching and `table.move` stay within the sandbox's budgets.

The instruction hook cannot interrupt one C call, so a pathological pattern, a long plain search or
a `table.move` over 2^62 slots used to outlive every budget (and the step's timeout and cancel).
`strguard.lua` runs such calls in Lua or in bounded C pieces; these tests hold it to Lua's own
results, including its error messages, and to the budgets.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from lupa import lua54

from mlua_swarm.dsl.sandbox import LuaAborted, LuaLimits, LuaSandbox, LuaScriptError

from ..conftest import mse_env

TWO_SECONDS = LuaLimits(wall_secs=2.0)

RUNAWAYS = {
    "backtracking find": 'local s = string.rep("a", 100000) return string.find(s, ".-.-.-.-.-.-b")',
    "one lazy item over a long string": 'local s = string.rep("a", 200000) return string.find(s, ".-b")',
    "nested stars": 'local s = string.rep("a", 30) .. "b" return string.find(s, string.rep("a*", 30) .. "c")',
    "backtracking match": 'local s = string.rep("a", 100000) return s:match("(.-)(.-)(.-)c")',
    "backtracking gsub": 'local s = string.rep("ab", 50000) return (s:gsub("a.-a.-a.-c", "x"))',
    "backtracking gmatch": 'local s = string.rep("a", 100000) for w in s:gmatch(".-.-.-c") do end',
    "a long plain needle": (
        'local s = string.rep("a", 20000000) return string.find(s, string.rep("a", 1000000) .. "b", 1, true)'
    ),
    "a long literal pattern": 'local s = string.rep("a", 20000000) return s:find(string.rep("a", 1000000) .. "b")',
    "table.move over 2^62 slots": "table.move({}, 1, math.maxinteger - 1, 2) return 1",
    "many cheap calls": 'local s = string.rep("a", 2000) .. "b" while true do s:find(".-.-c") end',
}


@pytest.mark.parametrize("source", RUNAWAYS.values(), ids=RUNAWAYS.keys())
def test_a_runaway_c_call_is_stopped_by_the_wall_clock(source: str) -> None:
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            LuaSandbox().run(source, "=runaway", limits=TWO_SECONDS)
        except BaseException as exc:  # the assertion below names whatever it was
            outcome.append(exc)

    # A daemon thread, so that a script the budget cannot stop fails this test instead of hanging it.
    thread = threading.Thread(target=run, daemon=True)
    started = time.monotonic()
    thread.start()
    thread.join(timeout=15)
    assert not thread.is_alive(), "the script was still running 13 s past its 2 s wall-time budget"
    assert len(outcome) == 1 and isinstance(outcome[0], LuaAborted), outcome
    assert str(outcome[0]) == "wall-time budget exceeded"
    assert time.monotonic() - started < 6


def test_ordinary_string_work_keeps_its_results() -> None:
    source = """
      local words = {}
      for w in ("one two  three"):gmatch("%a+") do words[#words + 1] = w end
      local key, value = ("name = mse"):match("^(%w+)%s*=%s*(%w+)$")
      local text = string.rep("word ", 20000)
      local squeezed, n = text:gsub("%s+", " ")
      local t = table.move({1, 2, 3}, 1, 3, 2)
      local big = {}
      for i = 1, 200000 do big[i] = i end
      table.move(big, 1, 199999, 2)
      return {words = words, key = key, value = value, n = n, len = #squeezed, t = t,
              first = big[1], second = big[2], last = big[200000],
              trimmed = ("  " .. string.rep("x", 50000) .. "  "):match("^%s*(.-)%s*$"):len(),
              plain = {string.find(string.rep("ab", 100000) .. "c", "abc", 1, true)}}
    """
    value = LuaSandbox().run(source, "=ordinary", limits=TWO_SECONDS).value
    assert value == {
        "words": ["one", "two", "three"],
        "key": "name",
        "value": "mse",
        "n": 20000,
        "len": 100000,
        "t": [1, 1, 2, 3],
        "first": 1,
        "second": 1,
        "last": 199999,
        "trimmed": 50000,
        "plain": [199999, 200001],
    }


def test_a_pattern_error_names_the_script_line() -> None:
    source = 'local s = string.rep("a", 100000)\nlocal found = s:find("(.-)%2")'
    with pytest.raises(LuaScriptError) as caught:
        LuaSandbox().run(source, "=bad", limits=TWO_SECONDS)
    assert caught.value.message == "bad:2: invalid capture index %2"
    assert caught.value.line == 2


# The Lua path against Lua's C functions on random patterns and subjects.

PIECES = [
    "a", "b", ".", "%a", "%d", "%s", "%W", "[ab]", "[^a]", "[a-c%]]", "[%a_]", "%%", "%.", "(", ")", "()",
    "*", "+", "-", "?", "$", "^", "%b()", "%f[%a]", "%f[%A]", "%1", "%2", "%0", "[", "%", "]", "x", "\0",
]  # fmt: skip
SUBJECT = "ab(a)b. a1_\0x]%-"
REPLACEMENTS = ["<%0>", "%1", "%2", "%%", "x%", "[%1|%1]", "", "%a"]


def _lua_pair() -> tuple[Any, Any, Any]:
    """A runner, Lua's own `string` and strguard's functions with a zero budget (the Lua path always)."""
    runtime = lua54.LuaRuntime(unpack_returned_tuples=True)
    source = resources.files("mlua_swarm.dsl").joinpath("strguard.lua").read_text(encoding="utf-8")
    c_string = runtime.eval("string")
    guarded = runtime.execute(source, runtime.eval("function() end"), c_string, runtime.eval("table"), 0)
    runner = runtime.eval(
        """
        function(lib, kind, s, p, a, b)
          local function pack(ok, ...) return {ok = ok, n = select("#", ...), ...} end
          local r
          if kind == "find" then r = pack(pcall(lib.find, s, p, a, b))
          elseif kind == "match" then r = pack(pcall(lib.match, s, p, a))
          elseif kind == "gsub" then r = pack(pcall(lib.gsub, s, p, a, b))
          elseif kind == "gsubf" then
            r = pack(pcall(lib.gsub, s, p, function(x, y) if x == "a" then return false end return y or x end, b))
          elseif kind == "gsubt" then r = pack(pcall(lib.gsub, s, p, {a = "A", [1] = "one"}, b))
          else
            r = pack(pcall(function()
              local out = {}
              for x, y in lib.gmatch(s, p, a) do
                out[#out + 1] = tostring(x) .. "|" .. tostring(y)
                if #out > 40 then break end
              end
              return table.concat(out, ",")
            end))
          end
          local out = {tostring(r.ok), tostring(r.n)}
          for i = 1, r.n do out[#out + 1] = (math.type(r[i]) or type(r[i])) .. ":" .. tostring(r[i]) end
          return table.concat(out, "\\1")
        end
        """
    )
    return runner, c_string, guarded


def test_the_lua_matcher_agrees_with_lua_on_random_patterns() -> None:
    runner, c_string, guarded = _lua_pair()
    rng = random.Random(20261207)
    for _ in range(6000):
        pattern = "".join(rng.choice(PIECES) for _ in range(rng.randint(0, 6)))
        subject = "".join(rng.choice(SUBJECT) for _ in range(rng.randint(0, 12)))
        kind = rng.choice(["find", "find", "match", "gsub", "gsubf", "gsubt", "gmatch"])
        a: Any = None
        b: Any = None
        if kind in ("find", "match", "gmatch"):
            a = rng.choice([None, 1, 2, -3, 0, 20, "2", 2.0])
            b = rng.choice([None, None, True]) if kind == "find" else None
        elif kind == "gsub":
            a = rng.choice(REPLACEMENTS)
            b = rng.choice([None, None, 1, 0])
        else:
            b = rng.choice([None, 2])
        expected = runner(c_string, kind, subject, pattern, a, b)
        assert runner(guarded, kind, subject, pattern, a, b) == expected, (kind, subject, pattern, a, b)


def test_the_lua_matcher_refuses_nesting_where_lua_does() -> None:
    """C stops at 200 nested matches ("pattern too complex"); so does the Lua matcher, at the same depth."""
    runner, c_string, guarded = _lua_pair()
    for depth in (199, 200):
        for pattern, subject in (("a?" * depth, "a" * depth), ("(a)" * 20 + "a-" * (depth - 40) + "$", "a" * 21)):
            expected = runner(c_string, "find", subject, pattern, None, None)
            assert runner(guarded, "find", subject, pattern, None, None) == expected
            assert ("pattern too complex" in expected) == (depth == 200)


def test_the_chunked_table_move_agrees_with_lua() -> None:
    runtime = lua54.LuaRuntime()
    source = resources.files("mlua_swarm.dsl").joinpath("strguard.lua").read_text(encoding="utf-8")
    guarded = runtime.execute(source, runtime.eval("function() end"), runtime.eval("string"), runtime.eval("table"))
    runner = runtime.eval(
        """
        function(move)
          local out = {}
          for _, case in ipairs({{1, 100000, 3}, {3, 100002, 1}, {1, 100000, 50000}, {1, 100000, 1}, {5, 4, 1}}) do
            local t = {}
            for i = 1, 100010 do t[i] = i end
            move(t, case[1], case[2], case[3])
            local other = move(t, 1, 70000, 2, {})
            out[#out + 1] = table.concat({t[1], t[2], t[3], t[50000], t[99999], t[100000], t[100001], t[100002],
                                          #other, other[2], other[70001]}, ",")
          end
          return table.concat(out, ";")
        end
        """
    )
    assert runner(guarded.move) == runner(runtime.eval("table.move"))


def test_mse_run_times_out_a_step_stuck_in_a_pathological_pattern(tmp_path: Path) -> None:
    """The step's timeout (not the script's own budget) stops it, and `mse run` ends."""
    source = 'local s = string.rep("a", 200000) return string.find(s, ".-.-.-.-.-.-b")'
    blueprint = {
        "id": "stuck",
        "flow": {"kind": "step", "ref": "a", "in": {"op": "lit", "value": None}, "out": {"op": "path", "at": "$.r"}},
        "agents": [{"name": "a", "kind": "lua", "spec": {"source": source}, "timeout_secs": 1}],
    }
    (tmp_path / "stuck.json").write_text(json.dumps(blueprint))
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "mlua_swarm", "run", "stuck.json", "--ephemeral", "--json"],
        capture_output=True,
        text=True,
        env=mse_env(),
        cwd=tmp_path,
        timeout=60,
    )
    assert proc.returncode == 1, proc.stderr
    document = json.loads(proc.stdout)
    assert document["status"] == "failed" and document["error"]["failed_step"] == "a"
    assert time.monotonic() - started < 20
