"""`NaN`, infinities and numbers past the float range are refused wherever input enters as JSON or
YAML (Blueprint files, `--init`): they used to reach the ctx, and `mse run --json` then printed
`NaN` / `Infinity`, which no JSON reader accepts. Lua budgets past what the runtime can count are a
diagnostic, not an `OverflowError` when the step runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import mse_env

STEP = {"kind": "step", "ref": "a", "in": {"op": "path", "at": "$.x"}, "out": {"op": "path", "at": "$.r"}}
AGENTS = [{"name": "a", "kind": "lua", "spec": {"source": "return 1"}}]


def mse_run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlua_swarm", "run", *args, "--ephemeral", "--json"],
        capture_output=True,
        text=True,
        env=mse_env(),
        cwd=cwd,
        timeout=60,
    )


def refused(proc: subprocess.CompletedProcess[str], words: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    [diagnostic] = json.loads(proc.stdout)["diagnostics"]
    assert diagnostic["kind"] == "invalid-number" and words in diagnostic["message"], diagnostic
    assert diagnostic["help"]


@pytest.mark.parametrize(("literal", "words"), [("NaN", "NaN"), ("-Infinity", "-Infinity"), ("1e999", "too large")])
def test_a_non_finite_number_in_a_json_blueprint_is_refused(tmp_path: Path, literal: str, words: str) -> None:
    text = json.dumps({"id": "x", "flow": STEP, "agents": AGENTS, "default_init_ctx": {"x": 12345}})
    (tmp_path / "bp.json").write_text(text.replace("12345", literal))
    refused(mse_run(tmp_path, "bp.json"), words)


@pytest.mark.parametrize("literal", [".inf", "-.Inf", ".nan", "1.0e+999"])
def test_a_non_finite_number_in_a_yaml_blueprint_is_refused(tmp_path: Path, literal: str) -> None:
    text = f"id: x\nflow: {json.dumps(STEP)}\nagents: {json.dumps(AGENTS)}\ndefault_init_ctx: {{x: {literal}}}\n"
    (tmp_path / "bp.yaml").write_text(text)
    refused(mse_run(tmp_path, "bp.yaml"), "not a finite number")


@pytest.mark.parametrize(("init", "words"), [('{"x": NaN}', "NaN"), ('{"x": [1, 2e400]}', "too large")])
def test_a_non_finite_number_in_init_is_refused(tmp_path: Path, init: str, words: str) -> None:
    (tmp_path / "bp.json").write_text(json.dumps({"id": "x", "flow": STEP, "agents": AGENTS}))
    refused(mse_run(tmp_path, "bp.json", "--init", init), words)
    (tmp_path / "init.json").write_text(init)
    refused(mse_run(tmp_path, "bp.json", "--init", "@init.json"), words)


def test_finite_numbers_near_the_edges_still_pass(tmp_path: Path) -> None:
    (tmp_path / "bp.json").write_text(json.dumps({"id": "x", "flow": STEP, "agents": AGENTS}))
    proc = mse_run(tmp_path, "bp.json", "--init", '{"x": [1.5e300, 1e-400, -0.0, 123]}')
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["final_ctx"]["x"] == [1.5e300, 0.0, -0.0, 123]


@pytest.mark.parametrize("value", ["1e300", "1000000000000000000000000000000", "-5", "0"])
def test_a_lua_budget_the_runtime_cannot_count_is_a_diagnostic(tmp_path: Path, value: str) -> None:
    agents = [{"name": "a", "kind": "lua", "spec": {"source": "return 1", "limits": {"memory_bytes": 12345}}}]
    text = json.dumps({"id": "x", "flow": STEP, "agents": agents}).replace("12345", value)
    (tmp_path / "bp.json").write_text(text)
    proc = mse_run(tmp_path, "bp.json")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    [diagnostic] = json.loads(proc.stdout)["diagnostics"]
    assert diagnostic["kind"] == "invalid-agent-spec" and "up to 2^53" in diagnostic["message"]


def test_an_integer_past_64_bits_reaches_a_lua_worker_as_a_float(tmp_path: Path) -> None:
    agents = [{"name": "a", "kind": "lua", "spec": {"source": "return {_CTX[2], math.type(_CTX[2])}"}}]
    (tmp_path / "bp.json").write_text(json.dumps({"id": "x", "flow": STEP, "agents": agents}))
    proc = mse_run(tmp_path, "bp.json", "--init", '{"x": [1, 12345678901234567890]}')
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["final_ctx"]["r"] == [12345678901234567890.0, "float"]
