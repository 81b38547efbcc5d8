"""build_bp_lua: diagnostics for Lua errors and bad return values, with the script's line."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlua_swarm.diagnostics import Diagnostic, DiagnosticError
from mlua_swarm.dsl.runner import build_bp_lua, build_bp_lua_source
from mlua_swarm.dsl.sandbox import LuaLimits

from .dsl_helpers import PRELUDE, build


def failure(path: Path, text: str) -> Diagnostic:
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DiagnosticError) as raised:
        build_bp_lua(path)
    (diagnostic,) = raised.value.diagnostics
    assert diagnostic.location.file == str(path)
    return diagnostic


def test_a_file_builds_to_its_blueprint_value(tmp_path: Path) -> None:
    script = tmp_path / "ok.bp.lua"
    script.write_text(PRELUDE + 'return B.bp { id = "ok", flow = F.seq {} }\n', encoding="utf-8")
    result = build_bp_lua(script)
    assert result.value == {"id": "ok", "flow": {"kind": "seq", "children": []}}
    assert result.warnings == []


def test_a_runtime_error_points_at_its_line(tmp_path: Path) -> None:
    diagnostic = failure(tmp_path / "bad.bp.lua", "local t = {}\n\nlocal x = t.missing.field\nreturn {}\n")
    assert diagnostic.code == "dsl-error"
    assert diagnostic.location.line == 3
    assert "attempt to index a nil value" in diagnostic.message
    assert not diagnostic.message.startswith("bad.bp.lua:")


def test_an_error_raised_inside_the_dsl_points_at_the_calling_line(tmp_path: Path) -> None:
    text = PRELUDE + '\nlocal flow = B.pipeline {\n  B.stage "a" { agent = "a", input = B.from "nope" },\n}\n'
    diagnostic = failure(tmp_path / "from.bp.lua", text)
    assert diagnostic.code == "dsl-error"
    assert diagnostic.location.line == 4
    assert "nope" in diagnostic.message


def test_error_in_a_helper_function_points_at_the_helper_line(tmp_path: Path) -> None:
    text = "local function helper()\n  error('helper broke')\nend\nhelper()\nreturn {}\n"
    diagnostic = failure(tmp_path / "helper.bp.lua", text)
    assert (diagnostic.location.line, diagnostic.message) == (2, "helper broke")


def test_a_syntax_error_points_at_its_line(tmp_path: Path) -> None:
    diagnostic = failure(tmp_path / "syntax.bp.lua", "local a = 1\nlocal b = = 2\nreturn {}\n")
    assert diagnostic.code == "dsl-error"
    assert diagnostic.location.line == 2
    assert "unexpected symbol" in diagnostic.message


@pytest.mark.parametrize(
    ("tail", "what"),
    [
        ('return "x"', "a str"),
        ("return 42", "a int"),
        ("return nil", "nothing"),
        ("return { 1, 2 }", "an array"),
        ("return {}", "an empty table"),
    ],
)
def test_a_non_table_return_is_dsl_not_a_table(tmp_path: Path, tail: str, what: str) -> None:
    diagnostic = failure(tmp_path / "ret.bp.lua", f"local x = 1\n\n{tail}\n")
    assert diagnostic.code == "dsl-not-a-table"
    assert what in diagnostic.message
    assert diagnostic.location.line == 3
    assert diagnostic.hint is not None and "return B.bp" in diagnostic.hint


def test_a_script_without_return_has_no_line(tmp_path: Path) -> None:
    diagnostic = failure(tmp_path / "none.bp.lua", "local x = 1\n")
    assert (diagnostic.code, diagnostic.location.line) == ("dsl-not-a-table", None)


def test_a_value_without_json_form_names_its_path(tmp_path: Path) -> None:
    diagnostic = failure(tmp_path / "fn.bp.lua", "return { agents = { { name = 'a', spec = print } } }\n")
    assert diagnostic.code == "dsl-error"
    assert "$.agents[0].spec" in diagnostic.message


def test_mixed_tables_are_refused_rather_than_truncated(tmp_path: Path) -> None:
    diagnostic = failure(tmp_path / "mixed.bp.lua", "return { id = 'x', list = { 1, 2, extra = 3 } }\n")
    assert "$.list" in diagnostic.message and "mixes array items" in diagnostic.message


def test_maps_with_integer_keys_become_objects() -> None:
    assert build("return { codes = { [200] = 'ok', [404] = 'missing' } }").value == {
        "codes": {"200": "ok", "404": "missing"}
    }


def test_the_build_sandbox_runs_no_commands_and_writes_no_files(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    diagnostic = failure(tmp_path / "os.bp.lua", f"os.execute('touch {marker}')\nreturn {{}}\n")
    assert "os.execute is not available in a .bp.lua build" in diagnostic.message
    diagnostic = failure(tmp_path / "io.bp.lua", f"io.open('{marker}', 'w'):write('x')\nreturn {{}}\n")
    assert "files are read-only" in diagnostic.message
    assert not marker.exists()
    diagnostic = failure(tmp_path / "req.bp.lua", "local io = require 'io'\nreturn {}\n")
    assert "module 'io' not found" in diagnostic.message


def test_a_runaway_build_script_is_stopped() -> None:
    with pytest.raises(DiagnosticError) as raised:
        build_bp_lua_source("while true do end", "spin.bp.lua", LuaLimits(instructions=2_000_000, wall_secs=None))
    (diagnostic,) = raised.value.diagnostics
    assert diagnostic.code == "dsl-error"
    assert "instruction budget exceeded" in diagnostic.message


def test_an_unreadable_file_is_a_diagnostic(tmp_path: Path) -> None:
    with pytest.raises(DiagnosticError) as raised:
        build_bp_lua(tmp_path / "absent.bp.lua")
    assert raised.value.diagnostics[0].code == "file-not-found"


def test_preloaded_modules_are_shared_within_one_build() -> None:
    assert build("return { same = require('flow_dsl') == F, b = require('bp_dsl') == B }").value == {
        "same": True,
        "b": True,
    }
