"""`mse run` end to end: real child interpreter, real Blueprints, exact final contexts and exit codes."""

from __future__ import annotations

import json
import re
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ..conftest import json_of, run_mse, start_mse, wait_for_file

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

AGENTS = """
import asyncio, gc, os, pathlib
from mlua_swarm import WorkerResult

async def double(inv):
    return inv.input * 2

async def judge(inv):
    return "PASS" if inv.input >= 8 else "RETRY"

async def fail_blocked(inv):
    return WorkerResult({"verdict": "NO"}, ok=False)

async def boom(inv):
    raise RuntimeError("exploded")

async def park(inv):
    pathlib.Path(os.environ["PARK_FILE"]).write_text(str(os.getpid()))
    await asyncio.Event().wait()

async def frozen(inv):
    return gc.get_freeze_count()

async def mark_then_count(inv):
    if inv.input == 0:
        pathlib.Path(os.environ["PARK_FILE"]).write_text(str(os.getpid()))
    return inv.input + 1
"""


def P(at: str) -> dict[str, Any]:
    return {"op": "path", "at": at}


def L(value: Any) -> dict[str, Any]:
    return {"op": "lit", "value": value}


def step(ref: str, inp: dict[str, Any], out: str) -> dict[str, Any]:
    return {"kind": "step", "ref": ref, "in": inp, "out": P(out)}


def endless_loop(counter: str, rounds: int, body: dict[str, Any]) -> dict[str, Any]:
    """A loop whose cond is always true: it runs `rounds` rounds of `body`."""
    return {"kind": "loop", "counter": P(counter), "max": rounds, "cond": L(True), "body": body}


def py_agent(name: str, fn: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "kind": "python", "spec": {"callable": f"test_agents:{fn}"}, **extra}


def write_bp(tmp_path: Path, doc: dict[str, Any], name: str = "bp.json") -> Path:
    (tmp_path / "test_agents.py").write_text(AGENTS)
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize(
    ("example", "expected"),
    [
        (
            "pipeline.json",
            {"length": 70, "article": "WHY DURABLE AGENTS / HOW DURABLE AGENTS / WHAT NEXT FOR DURABLE AGENTS"},
        ),
        ("review_loop.json", {"verdict": "PASS", "rounds": 2}),
        ("fanout_review.json", {"summary": "MINOR", "accepted": True}),
        ("try_rollback.json", {"rolled_back": True}),
    ],
)
def test_examples_run_to_the_expected_ctx(example: str, expected: dict[str, Any]) -> None:
    proc = run_mse(["run", str(EXAMPLES / example), "--json", "--ephemeral"])
    assert proc.returncode == 0, proc.stderr
    doc = json_of(proc)
    assert doc["status"] == "done" and doc["run_id"].startswith("R-")
    assert {k: doc["final_ctx"][k] for k in expected} == expected
    assert "Traceback" not in proc.stderr


def test_try_rollback_example_restores_the_snapshot() -> None:
    doc = json_of(run_mse(["run", str(EXAMPLES / "try_rollback.json"), "--json", "--ephemeral"]))
    ctx = doc["final_ctx"]
    assert "deployed" not in ctx and "smoke" not in ctx
    assert ctx["failure"].startswith("step 'smoke': blocked:")
    assert ctx["notified"] == f"notified: {ctx['failure']}"


FLOWS: list[tuple[str, dict[str, Any], dict[str, Any], Any, dict[str, Any]]] = [
    (
        "seq with assign",
        {
            "kind": "seq",
            "children": [
                step("double", P("$.n"), "$.a"),
                step("double", P("$.a"), "$.b"),
                {"kind": "assign", "at": P("$.sum"), "value": {"op": "add", "lhs": P("$.a"), "rhs": P("$.b")}},
            ],
        },
        {"double": "double"},
        {"n": 3},
        {"n": 3, "a": 6, "b": 12, "sum": 18.0},
    ),
    (
        "loop until verdict",
        {
            "kind": "seq",
            "children": [
                {"kind": "assign", "at": P("$.verdict"), "value": L("RETRY")},
                {
                    "kind": "loop",
                    "counter": P("$.i"),
                    "max": 10,
                    "cond": {"op": "eq", "lhs": P("$.verdict"), "rhs": L("RETRY")},
                    "body": {
                        "kind": "seq",
                        "children": [step("double", P("$.n"), "$.n"), step("judge", P("$.n"), "$.verdict")],
                    },
                },
            ],
        },
        {"double": "double", "judge": "judge"},
        {"n": 1},
        {"n": 8, "verdict": "PASS", "i": 3},
    ),
    (
        "branch on a value",
        {
            "kind": "branch",
            "cond": {"op": "gt", "lhs": P("$.n"), "rhs": L(5)},
            "then": {"kind": "assign", "at": P("$.size"), "value": L("big")},
            "else": {"kind": "assign", "at": P("$.size"), "value": L("small")},
        },
        {},
        {"n": 2},
        {"n": 2, "size": "small"},
    ),
    (
        "fanout all",
        {
            "kind": "fanout",
            "items": P("$.xs"),
            "bind": P("$.x"),
            "join": "all",
            "out": P("$.lanes"),
            "body": step("double", P("$.x"), "$.y"),
        },
        {"double": "double"},
        {"xs": [1, 2]},
        {"xs": [1, 2], "lanes": [{"xs": [1, 2], "x": 1, "y": 2}, {"xs": [1, 2], "x": 2, "y": 4}]},
    ),
    (
        "try catches a worker error",
        {
            "kind": "try",
            "body": step("boom", P("$.n"), "$.out"),
            "err_at": P("$.err"),
            "catch": {"kind": "assign", "at": P("$.recovered"), "value": L(True)},
        },
        {"boom": "boom"},
        {"n": 1},
        {"n": 1, "err": "step 'boom': worker fn returned error: RuntimeError: exploded", "recovered": True},
    ),
    (
        "builtin identity",
        step("echo", L({"hello": "world"}), "$.echo"),
        {},
        None,
        {"echo": {"by": "baseline-identity", "agent": "echo", "echoed": '{"hello":"world"}'}},
    ),
]


@pytest.mark.parametrize(("name", "flow", "fns", "init", "expected"), FLOWS, ids=[f[0] for f in FLOWS])
def test_small_flows_give_exact_final_ctx(
    tmp_path: Path, name: str, flow: dict[str, Any], fns: dict[str, str], init: Any, expected: dict[str, Any]
) -> None:
    agents = [py_agent(agent, fn) for agent, fn in fns.items()]
    if name == "builtin identity":
        agents = [{"name": "echo", "kind": "rust_fn", "spec": {"fn_id": "identity"}}]
    path = write_bp(tmp_path, {"id": name.replace(" ", "-"), "flow": flow, "agents": agents})
    args = ["run", str(path), "--json", "--ephemeral"] + (["--init", json.dumps(init)] if init is not None else [])
    proc = run_mse(args)
    assert proc.returncode == 0, proc.stderr
    assert json_of(proc)["final_ctx"] == expected


@pytest.mark.parametrize("stored", [False, True], ids=["ephemeral", "stored"])
def test_mse_run_freezes_its_startup_heap_before_running(tmp_path: Path, stored: bool) -> None:
    """The imports and the compiled Blueprint are out of the collector's reach while the steps run."""
    doc = {"id": "frozen", "flow": step("f", L(0), "$.frozen"), "agents": [py_agent("f", "frozen")]}
    path = write_bp(tmp_path, doc)
    where = ["--store", str(tmp_path / "runs.sqlite3")] if stored else ["--ephemeral"]
    proc = run_mse(["run", str(path), "--json", *where])
    assert proc.returncode == 0, proc.stderr
    assert json_of(proc)["final_ctx"]["frozen"] > 10_000  # every module `mse run` imported, at least


def test_fn_option_registers_a_rust_fn_id(tmp_path: Path) -> None:
    path = write_bp(
        tmp_path,
        {
            "id": "fn",
            "flow": step("d", P("$.n"), "$.out"),
            "agents": [{"name": "d", "kind": "rust_fn", "spec": {"fn_id": "dbl"}}],
        },
    )
    proc = run_mse(
        ["run", str(path), "--json", "--ephemeral", "--fn", "dbl=test_agents:double", "--init", '{"n": 21}'],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert json_of(proc)["final_ctx"]["out"] == 42


def test_init_from_file_and_yaml_blueprint(tmp_path: Path) -> None:
    (tmp_path / "test_agents.py").write_text(AGENTS)
    (tmp_path / "bp.yaml").write_text(
        "id: yaml-bp\nflow: {kind: step, ref: d, in: {op: path, at: $.n}, out: {op: path, at: $.out}}\n"
        "agents:\n  - {name: d, kind: python, spec: {callable: 'test_agents:double'}}\n"
    )
    (tmp_path / "init.json").write_text('{"n": 5}')
    proc = run_mse(["run", str(tmp_path / "bp.yaml"), "--json", "--ephemeral", "--init", f"@{tmp_path / 'init.json'}"])
    assert proc.returncode == 0, proc.stderr
    assert json_of(proc)["final_ctx"] == {"n": 5, "out": 10}


def test_a_blocked_step_fails_the_run_with_exit_1_and_the_failure_document(tmp_path: Path) -> None:
    path = write_bp(
        tmp_path,
        {
            "id": "blocked",
            "flow": {
                "kind": "seq",
                "children": [
                    {"kind": "assign", "at": P("$.before"), "value": L(1)},
                    step("no", P("$.before"), "$.out"),
                ],
            },
            "agents": [py_agent("no", "fail_blocked")],
        },
    )
    proc = run_mse(["run", str(path), "--json", "--ephemeral"])
    assert proc.returncode == 1
    doc = json_of(proc)
    assert doc["status"] == "failed"
    assert doc["error"]["failed_step"] == "no"
    assert doc["error"]["verdict_value"] == {"verdict": "NO"}
    assert "blocked" in doc["error"]["message"]
    assert doc["partial_ctx"] == {"before": 1}


BAD_INPUTS = [
    ("invalid json", '{"id": "x", "flow": ', "invalid-json", "line 1"),
    ("unknown key", json.dumps({"id": "x", "flow": step("a", L(1), "$.a"), "agentz": []}), "schema", "agentz"),
    (
        "unresolved ref",
        json.dumps({"id": "x", "flow": step("ghost", L(1), "$.a"), "agents": []}),
        "unresolved-agent-ref",
        "ghost",
    ),
    (
        "bad path",
        json.dumps(
            {
                "id": "x",
                "flow": step("a", P("$.a[0]"), "$.a"),
                "agents": [{"name": "a", "kind": "rust_fn", "spec": {"fn_id": "identity"}}],
            }
        ),
        "invalid-flow",
        "$.flow",
    ),
    (
        "verdict value not in contract",
        json.dumps(
            {
                "id": "x",
                "flow": {
                    "kind": "seq",
                    "children": [
                        step("a", L(1), "$.v"),
                        {
                            "kind": "branch",
                            "cond": {"op": "eq", "lhs": P("$.v"), "rhs": L("MAYBE")},
                            "then": {"kind": "seq", "children": []},
                            "else": {"kind": "seq", "children": []},
                        },
                    ],
                },
                "agents": [
                    {
                        "name": "a",
                        "kind": "rust_fn",
                        "spec": {"fn_id": "identity"},
                        "verdict": {"channel": "body", "values": ["PASS", "FAIL"]},
                    }
                ],
            }
        ),
        "verdict-value-not-in-contract",
        "MAYBE",
    ),
]


@pytest.mark.parametrize(("name", "text", "code", "place"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_exits_2_with_a_diagnostic(tmp_path: Path, name: str, text: str, code: str, place: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text)
    proc = run_mse(["run", str(path), "--json", "--ephemeral"])
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"[{code}]" in proc.stderr and place in proc.stderr and "hint:" in proc.stderr
    doc = json_of(proc)
    assert doc["status"] == "invalid" and doc["diagnostics"][0]["kind"] == code


def test_bad_init_json_exits_2(tmp_path: Path) -> None:
    proc = run_mse(["run", str(EXAMPLES / "pipeline.json"), "--ephemeral", "--init", "{topic: x}"])
    assert proc.returncode == 2
    assert "[invalid-json]" in proc.stderr and "hint:" in proc.stderr and "Traceback" not in proc.stderr


def test_run_timeout_fails_the_run(tmp_path: Path) -> None:
    path = write_bp(tmp_path, {"id": "slow", "flow": step("park", L(1), "$.x"), "agents": [py_agent("park", "park")]})
    proc = run_mse(
        ["run", str(path), "--json", "--ephemeral", "--timeout", "0.5"], env={"PARK_FILE": str(tmp_path / "parked")}
    )
    assert proc.returncode == 1
    assert json_of(proc)["error"]["message"] == "run exceeded its timeout of 0.5s"


def assert_ctrl_c_cancels(child: subprocess.Popen[str], park_file: Path) -> str:
    """Once the run has started (its agent wrote `park_file`), Ctrl-C ends it cancelled with exit 130;
    returns the progress (stderr)."""
    wait_for_file(park_file, child)
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=30)
    assert child.returncode == 130, err
    doc = json.loads(out)
    assert doc["status"] == "cancelled" and "Ctrl-C" in doc["error"]["message"]
    return err


def test_ctrl_c_cancels_the_run_cleanly_with_exit_130(tmp_path: Path) -> None:
    park_file = tmp_path / "parked"
    path = write_bp(tmp_path, {"id": "parked", "flow": step("park", L(1), "$.x"), "agents": [py_agent("park", "park")]})
    child = start_mse(["run", str(path), "--json", "--ephemeral"], env={"PARK_FILE": str(park_file)})
    err = assert_ctrl_c_cancels(child, park_file)
    # The step it stopped gets its line, as cancellations always do.
    assert re.search(r"^  ⊘ park cancelled [0-9.]+ms — cancelled$", err, re.MULTILINE), err


def test_ctrl_c_cancels_a_long_loop_of_quick_steps(tmp_path: Path) -> None:
    # Quick async steps never wait; the flow still gives the event loop the turns its signal handler needs.
    park_file = tmp_path / "parked"
    loop = endless_loop("$.round", 10_000_000, step("count", P("$.n"), "$.n"))
    path = write_bp(tmp_path, {"id": "quick", "flow": loop, "agents": [py_agent("count", "mark_then_count")]})
    child = start_mse(
        ["run", str(path), "--json", "--ephemeral", "--init", '{"n": 0}'], env={"PARK_FILE": str(park_file)}
    )
    assert_ctrl_c_cancels(child, park_file)


def test_ten_thousand_sequential_steps(tmp_path: Path) -> None:
    loop = endless_loop("$.i", 10_000, step("echo", P("$.i"), "$.last"))
    path = write_bp(tmp_path, {"id": "long", "flow": loop, "agents": [py_agent("echo", "double")]})
    proc = run_mse(["run", str(path), "--json", "--ephemeral"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json_of(proc)["final_ctx"] == {"i": 10_000, "last": 2 * 9_999}


def test_policy_is_enforced_by_mse_run(tmp_path: Path) -> None:
    flow = {"kind": "seq", "children": [step("d", P("$.n"), "$.a"), step("b", P("$.a"), "$.b")]}
    path = write_bp(
        tmp_path,
        {
            "id": "p",
            "flow": flow,
            "policy": {"deny": ["b"]},
            "agents": [py_agent("d", "double"), py_agent("b", "boom")],
        },
    )
    proc = run_mse(["run", str(path), "--json", "--ephemeral", "--init", '{"n": 1}'])
    assert proc.returncode == 1, proc.stderr
    doc = json_of(proc)
    assert doc["error"]["failed_step"] == "b" and "denied by policy.deny" in doc["error"]["message"]
    assert doc["partial_ctx"] == {"n": 1, "a": 2}


def test_a_malformed_policy_is_invalid_input(tmp_path: Path) -> None:
    path = write_bp(
        tmp_path,
        {
            "id": "p",
            "flow": step("d", P("$.n"), "$.a"),
            "policy": {"concurency": {"d": 1}},
            "agents": [py_agent("d", "double")],
        },
    )
    proc = run_mse(["run", str(path), "--ephemeral"])
    assert proc.returncode == 2 and "concurency" in proc.stderr and "hint:" in proc.stderr
