"""Lua's standard library in `.bp.lua` builds and, by opt-in, in `lua` workers (issue #13, item 7).

Upstream runs both with Lua's standard library. A build script here may `require` modules from its
folder and the include folders, read files (relative paths from its folder) and read the clock and
the environment; a `lua` worker stays sandboxed unless its spec says `"stdlib": "full"`, and a
sandboxed script touching a missing library is told how to opt in.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mlua_swarm.blueprint.compiler import compile_blueprint
from mlua_swarm.diagnostics import DiagnosticError
from mlua_swarm.dsl.runner import INCLUDES_ENV, build_bp_lua
from mlua_swarm.run import Run

from ..conftest import run_mse

MODULE = """local M = {}
function M.echo(name) return { name = name, kind = "lua", spec = { source = "return _PROMPT" } } end
M.topic = io.open("data/topic.txt"):read("l")
return M
"""

SCRIPT = """local B = require "bp_dsl"
local agents = require "lib.agents"
local shared = require "shared"
local lines = {}
for line in io.lines("data/topic.txt") do lines[#lines + 1] = line end
return B.bp {
  id = "stdlib-" .. (os.getenv("BP_SUFFIX") or "unset"),
  flow = B.pipeline { B.stage "a" { agent = "a", input = "$.d.x" } },
  agents = { agents.echo("a") },
  default_init_ctx = {
    d = { x = agents.topic },
    lines = lines,
    shared = shared,
    year = os.date("!%Y", 0),
    clock = type(os.clock()),
    now = os.time() > 0,
  },
}
"""


def write(folder: Path, name: str, text: str) -> Path:
    target = folder / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return target


def script_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    write(folder, "lib/agents/init.lua", MODULE)
    write(folder, "data/topic.txt", "durable runs\nsecond line\n")
    write(tmp_path / "shared", "shared.lua", 'return "from the include folder"')
    return folder


def build_errors(path: Path) -> list[Any]:
    with pytest.raises(DiagnosticError) as info:
        build_bp_lua(path)
    return info.value.diagnostics


def test_a_build_requires_modules_reads_files_and_the_clock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = script_folder(tmp_path)
    script = write(folder, "main.bp.lua", SCRIPT)
    monkeypatch.setenv("BP_SUFFIX", "x")
    monkeypatch.chdir(tmp_path)
    value = build_bp_lua(script, includes=[tmp_path / "shared"]).value
    assert value["id"] == "stdlib-x"
    assert value["agents"] == [{"name": "a", "kind": "lua", "spec": {"source": "return _PROMPT"}}]
    assert value["default_init_ctx"] == {
        "d": {"x": "durable runs"},
        "lines": ["durable runs", "second line"],
        "shared": "from the include folder",
        "year": "1970",
        "clock": "number",
        "now": True,
    }


def test_a_build_finds_modules_through_the_includes_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = script_folder(tmp_path)
    script = write(folder, "main.bp.lua", SCRIPT)
    assert "shared.lua" in build_errors(script)[0].message
    monkeypatch.setenv(INCLUDES_ENV, str(tmp_path / "shared"))
    assert build_bp_lua(script).value["default_init_ctx"]["shared"] == "from the include folder"


def test_mse_bp_build_passes_include_to_require(tmp_path: Path) -> None:
    folder = script_folder(tmp_path)
    write(folder, "main.bp.lua", SCRIPT)
    built = run_mse(["bp", "build", "main.bp.lua", "--include", str(tmp_path / "shared")], cwd=folder)
    assert built.returncode == 0, built.stderr
    assert json.loads(built.stdout)["default_init_ctx"]["lines"] == ["durable runs", "second line"]


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ('os.execute("true")', "os.execute is not available in a .bp.lua build (available: os.getenv, os.time"),
        ('os.remove("data/topic.txt")', "os.remove is not available in a .bp.lua build"),
        (
            'io.open("data/topic.txt", "w")',
            "io.open mode 'w' is not available in a .bp.lua build (files are read-only)",
        ),
        ('io.write("x")', "io.write is not available in a .bp.lua build (available: io.open(path)"),
        ("io.lines()", "io.lines needs a path in a .bp.lua build"),
        ('dofile("lib/agents/init.lua")', "dofile is not available in a .bp.lua build; require a Lua module"),
        ('loadfile("lib/agents/init.lua")', "loadfile is not available in a .bp.lua build"),
        ('require "missing.mod"', "module 'missing.mod' not found (no missing/mod.lua or missing/mod/init.lua in"),
        ('require "../escape"', "module '../escape' not found (a module name is dot-separated words"),
    ],
)
def test_a_build_refuses_the_rest_with_what_is_available(tmp_path: Path, expression: str, message: str) -> None:
    folder = script_folder(tmp_path)
    script = write(folder, "bad.bp.lua", f"local B = require 'bp_dsl'\nlocal x = {expression}\nreturn {{}}\n")
    [diag] = build_errors(script)
    assert diag.code == "dsl-error"
    assert message in diag.message
    assert diag.location.line == 2
    assert (folder / "data/topic.txt").exists()


def test_a_module_error_names_the_module_file(tmp_path: Path) -> None:
    folder = script_folder(tmp_path)
    write(folder, "broken.lua", "local x = nil\nreturn x.field\n")
    script = write(folder, "uses.bp.lua", 'local m = require "broken"\nreturn m\n')
    [diag] = build_errors(script)
    assert "broken.lua:2:" in diag.message and "attempt to index a nil value" in diag.message


# -- lua workers ------------------------------------------------------------------------------------


async def run_agent(tmp_path: Path, spec: dict[str, Any]) -> Any:
    raw = {
        "id": "w",
        "flow": {"kind": "step", "ref": "w", "in": {"op": "path", "at": "$.x"}, "out": {"op": "path", "at": "$.y"}},
        "agents": [{"name": "w", "kind": "lua", "spec": spec}],
    }
    async with Run(compile_blueprint(raw, base_dir=tmp_path)) as run:
        return await run.execute({"x": "hello"})


OPT_IN = """set "stdlib": "full" in the agent's spec to run it with Lua's standard library"""


@pytest.mark.parametrize(
    ("source", "refused"),
    [
        ('return os.getenv("HOME")', "os is not available to a sandboxed lua worker"),
        ('return io.open("f.txt"):read("a")', "io is not available to a sandboxed lua worker"),
        ('return dofile("f.lua")', "dofile is not available to a sandboxed lua worker"),
        ('return require "f"', "a sandboxed lua worker can require only preloaded modules"),
    ],
)
async def test_a_sandboxed_worker_is_told_how_to_opt_in(tmp_path: Path, source: str, refused: str) -> None:
    result = await run_agent(tmp_path, {"source": source})
    assert result.status == "failed"
    message = json.dumps(result.error)
    assert refused in message and OPT_IN.replace('"', '\\"') in message


async def test_a_full_stdlib_worker_gets_os_io_require_and_dofile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, "f.txt", "from a file")
    write(tmp_path, "f.lua", 'return "from dofile"')
    write(tmp_path, "helper.lua", "return { twice = function(s) return s .. s end }")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MSE_TEST_VALUE", "env")
    source = """package.path = "./?.lua;" .. package.path
local helper = require "helper"
return {
  env = os.getenv("MSE_TEST_VALUE"),
  file = io.open("f.txt"):read("a"),
  done = dofile("f.lua"),
  twice = helper.twice(_PROMPT),
}
"""
    result = await run_agent(tmp_path, {"source": source, "stdlib": "full"})
    assert result.status == "done", result.error
    assert result.final_ctx["y"] == {"env": "env", "file": "from a file", "done": "from dofile", "twice": "hellohello"}


async def test_a_full_stdlib_run_never_leaks_into_the_next(tmp_path: Path) -> None:
    first = await run_agent(tmp_path, {"source": "package.loaded.marker = 'left over'; return 1", "stdlib": "full"})
    assert first.status == "done"
    second = await run_agent(tmp_path, {"source": "return package.loaded.marker or 'clean'", "stdlib": "full"})
    assert second.final_ctx["y"] == "clean"


async def test_a_full_stdlib_worker_keeps_its_budgets(tmp_path: Path) -> None:
    result = await run_agent(tmp_path, {"source": "while true do end", "stdlib": "full", "limits": {"wall_secs": 0.2}})
    assert result.status == "failed"
    assert "wall-time budget exceeded" in json.dumps(result.error)


def test_an_unknown_stdlib_value_is_an_invalid_spec(tmp_path: Path) -> None:
    raw = {
        "id": "w",
        "flow": {"kind": "step", "ref": "w", "in": {"op": "path", "at": "$.x"}, "out": {"op": "path", "at": "$.y"}},
        "agents": [{"name": "w", "kind": "lua", "spec": {"source": "return 1", "stdlib": "all"}}],
    }
    with pytest.raises(DiagnosticError) as info:
        compile_blueprint(raw, base_dir=tmp_path)
    [diag] = info.value.diagnostics
    assert diag.code == "invalid-agent-spec"
    assert "spec.stdlib must be" in diag.message
