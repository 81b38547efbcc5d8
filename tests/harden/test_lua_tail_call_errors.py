"""A pattern error raised through a tail call still names the script's line.

A tail call to a Lua function replaces the calling frame, and the sandbox's string functions are Lua
functions (strguard.lua), so `return s:find(bad)` used to lose the line Lua's own C function names.
The script's main chunk now keeps its frame through its `return`; inside a function that tail-calls,
the message names the line of the script still running (the call of that function).
"""

from __future__ import annotations

import pytest
from lupa import lua54

from mlua_swarm.core.engine import Engine, TaskSpec
from mlua_swarm.dsl.sandbox import LuaLimits, LuaSandbox, LuaScriptError
from mlua_swarm.errors import DispatchFailed
from mlua_swarm.tokens import CapToken
from mlua_swarm.worker.kinds import LinkEnv
from mlua_swarm.worker.lua import LuaKind

from ..conftest import run_one

LIMITS = LuaLimits(wall_secs=10.0)
LONG = 'local s = string.rep("a", 100000)\n'
"""A subject long enough that the match runs in strguard's Lua matcher."""
SHORT = 'local s = "aaa"\n'
"""A subject short enough that the match runs in Lua's C function, through pcall."""


def script_error(source: str) -> LuaScriptError:
    with pytest.raises(LuaScriptError) as caught:
        LuaSandbox().run(source, "=bad", limits=LIMITS)
    return caught.value


def c_lua_message(source: str) -> str:
    """What Lua's own C string functions raise for `source` (chunk `bad`), outside the sandbox."""
    runtime = lua54.LuaRuntime()
    run = runtime.eval("function(src) local ok, e = pcall(load(src, '=bad')) return e end")
    return str(run(source))


TAIL_RETURNS = {
    "find": 'return s:find("(.-)%2")',
    "match": 'return s:match("(.-)%2")',
    "gsub": 'return s:gsub("(.-)%2", "x")',
    "gmatch iterator": 'local it = s:gmatch("(.-)%2")\nreturn it()',
    "gsub replacement value": 'return s:gsub("a", function() return {} end)',
}


@pytest.mark.parametrize("subject", [LONG, SHORT], ids=["lua matcher", "c matcher"])
@pytest.mark.parametrize("name", sorted(TAIL_RETURNS))
def test_the_chunks_own_return_names_its_line_as_lua_does(subject: str, name: str) -> None:
    source = subject + TAIL_RETURNS[name]
    found = script_error(source)
    line = source.count("\n") + 1
    assert found.message.startswith(f"bad:{line}: ") and found.line == line
    assert found.message == c_lua_message(source)


@pytest.mark.parametrize("subject", [LONG, SHORT], ids=["lua matcher", "c matcher"])
def test_a_gmatch_loop_names_its_line_as_lua_does(subject: str) -> None:
    source = subject + 'local n = 0\nfor w in s:gmatch("(.-)%2") do n = n + 1 end\nreturn n'
    found = script_error(source)
    assert found.message == c_lua_message(source) == "bad:3: invalid capture index %2"


@pytest.mark.parametrize("subject", [LONG, SHORT], ids=["lua matcher", "c matcher"])
def test_a_function_called_from_c_that_tail_calls_names_the_line_that_called_c(subject: str) -> None:
    source = subject + 'local ok, e = pcall(function()\n  return s:find("(.-)%2")\nend)\nerror(e, 0)'
    assert script_error(source).message == "bad:2: invalid capture index %2"
    sort = subject + 'local t = {"b", "a"}\ntable.sort(t, function(a, b)\n  return s:match("(.-)%2")\nend)'
    assert script_error(sort).message == "bad:3: invalid capture index %2"


def test_a_function_that_tail_calls_names_the_line_that_called_it() -> None:
    source = LONG + 'local function f()\n  return s:find("(.-)%2")\nend\nlocal x = f()\nreturn x'
    assert script_error(source).message == "bad:5: invalid capture index %2"


def test_a_direct_pcall_of_the_function_names_no_line_as_lua_does() -> None:
    for subject in (LONG, SHORT):
        source = subject + 'local ok, e = pcall(string.find, s, "(.-)%2")\nreturn e'
        assert LuaSandbox().run(source, "=bad", limits=LIMITS).value == "invalid capture index %2"
    assert c_lua_message(SHORT + 'local ok, e = pcall(string.find, s, "(.-)%2")\nerror(e, 0)') == (
        "invalid capture index %2"
    )


async def test_a_lua_agents_failure_names_the_line(engine: Engine, op: CapToken) -> None:
    source = 'local s = string.rep("a", 100000)\nreturn s:find("(.-)%2")'
    agent = LuaKind().build({"name": "a", "kind": "lua", "spec": {"source": source, "label": "scan.lua"}}, LinkEnv())
    with pytest.raises(DispatchFailed, match=r"lua eval \[scan\.lua\]: scan\.lua:2: invalid capture index %2"):
        await run_one(engine, op, agent, TaskSpec("a", ""))
