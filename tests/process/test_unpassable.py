"""What no operating system passes to a child (a NUL in the command line, the working directory or
the environment; an environment name that is empty or holds `=`) is refused when the Blueprint
compiles, by the `subprocess` kind, with its code, place and hint; `mse bp lint` and `mse run` exit
2 before any step runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mlua_swarm.blueprint.compiler import compile_blueprint
from mlua_swarm.diagnostics import DiagnosticError
from tests.conftest import run_mse


def _step(ref: str, out: str) -> dict[str, Any]:
    return {"kind": "step", "ref": ref, "in": {"op": "path", "at": "$"}, "out": {"op": "path", "at": out}}


def _blueprint(agent: dict[str, Any], marker: Path, **extra: Any) -> dict[str, Any]:
    """`first` (touches `marker`), then `agent` (named `bad`)."""
    touch = {"program": "sh", "args": ["-c", f"touch {marker}; echo 1"]}
    first = {"name": "first", "kind": "subprocess", "spec": touch}
    flow = {"kind": "seq", "children": [_step("first", "$.a"), _step("bad", "$.b")]}
    return {"id": "unpassable", "flow": flow, "agents": [first, {"name": "bad", **agent}], **extra}


def _spec(**spec: Any) -> dict[str, Any]:
    return {"kind": "subprocess", "spec": {"program": "echo", **spec}}


CASES: dict[str, tuple[dict[str, Any], dict[str, Any], str]] = {
    "NUL in an argument": (_spec(args=["ok", "a\0b"]), {}, "argument 2 'a\\x00b' holds a NUL"),
    "NUL in the program": ({"kind": "subprocess", "spec": {"program": "ec\0ho"}}, {}, "the program 'ec\\x00ho'"),
    "= in an env name": (_spec(env={"A=B": "1"}), {}, "environment name 'A=B'"),
    "NUL in an env name": (_spec(env={"A\0": "1"}), {}, "environment name 'A\\x00'"),
    "an empty env name": (_spec(env={"": "1"}), {}, "environment name ''"),
    "NUL in an env value": (_spec(env={"A": "x\0y"}), {}, "environment variable 'A' holds a NUL"),
    "NUL in cwd": (_spec(cwd="sub\0dir"), {}, "cwd 'sub\\x00dir'"),
    "= in a template's env name": (
        {"kind": "subprocess", "runner": {"backend": "subprocess", "template": "t"}},
        {"subprocesses": [{"name": "t", "argv": ["echo"], "env": {"X=Y": "1"}}]},
        "(template 't'): environment name 'X=Y'",
    ),
    "NUL in a template's argv": (
        {"kind": "subprocess", "runner": {"backend": "subprocess", "template": "t"}},
        {"subprocesses": [{"name": "t", "argv": ["echo", "{prompt}\0"]}]},
        "(template 't'): argument 1",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_kind_refuses_it_when_the_blueprint_compiles(case: str, tmp_path: Path) -> None:
    agent, extra, said = CASES[case]
    with pytest.raises(DiagnosticError) as info:
        compile_blueprint(_blueprint(agent, tmp_path / "ran", **extra), base_dir=tmp_path)
    [found] = info.value.diagnostics
    assert found.code == "invalid-agent-spec" and found.location.json_path == "$.agents[1].spec"
    assert found.location.name == "bad" and said in found.message and found.hint


def test_an_ordinary_env_and_argv_compile(tmp_path: Path) -> None:
    agent = _spec(args=["a=b", "ünï"], env={"A_B": "x=y", "LANG": ""}, cwd=".")
    compile_blueprint(_blueprint(agent, tmp_path / "ran"), base_dir=tmp_path)


@pytest.mark.parametrize("case", ["NUL in an argument", "= in an env name", "NUL in an env value"])
def test_mse_lint_and_run_exit_2_before_any_step_runs(case: str, tmp_path: Path) -> None:
    agent, extra, said = CASES[case]
    marker = tmp_path / "ran"
    file = tmp_path / "unpassable.json"
    file.write_text(json.dumps(_blueprint(agent, marker, **extra)))
    for args in (["bp", "lint", str(file)], ["run", str(file), "--ephemeral"]):
        proc = run_mse(args, cwd=tmp_path)
        shown = proc.stdout + proc.stderr
        assert proc.returncode == 2, (args, shown)
        assert "invalid-agent-spec" in shown and said in shown and "hint:" in shown and "Traceback" not in shown
    assert not marker.exists()
