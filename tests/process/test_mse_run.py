"""`mse run` with subprocess agents: the examples end to end, and Ctrl-C killing the whole child group."""

import json
import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import SRC, json_of, run_mse

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "subprocess"
PATH_WITH_THIS_PYTHON = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])

PARENT_AND_GRANDCHILD = """
import json, os, subprocess, sys, time
sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1000)"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
with open(os.environ["PIDS_FIFO"], "w") as fifo:
    fifo.write(json.dumps({"child": os.getpid(), "grandchild": sleeper.pid}))
time.sleep(1000)
"""


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("plain.json", {"words": 9, "report": {"words": 9, "verdict": "long"}}),
        (
            "streaming.json",
            {
                "measured": {
                    "out": {"lengths": {"alpha": 5, "beta": 4, "gamma-delta": 11}, "total": 20},
                    "parts": {"longest": "gamma-delta"},
                }
            },
        ),
        (
            "templates.json",
            {
                "sum": {"total": 12, "count": 3},
                "brief": {"system": "Summarise 3 numbers adding up to 12.", "prompt": '{"total":12,"count":3}'},
            },
        ),
    ],
)
def test_examples_run_end_to_end(name: str, expected: dict[str, object]) -> None:
    proc = run_mse(["run", str(EXAMPLES / name), "--json", "--ephemeral"], env={"PATH": PATH_WITH_THIS_PYTHON})
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json_of(proc)
    assert doc["status"] == "done"
    assert {key: doc["final_ctx"][key] for key in expected} == expected


def test_ctrl_c_kills_the_subprocess_worker_and_its_grandchild(tmp_path: Path) -> None:
    script = tmp_path / "parent.py"
    script.write_text(PARENT_AND_GRANDCHILD)
    blueprint = {
        "id": "ctrl-c",
        "flow": {"kind": "step", "ref": "hold", "in": {"op": "lit", "value": 1}, "out": {"op": "path", "at": "$.x"}},
        "agents": [{"name": "hold", "kind": "subprocess", "spec": {"program": sys.executable, "args": [str(script)]}}],
    }
    path = tmp_path / "bp.json"
    path.write_text(json.dumps(blueprint))
    fifo = tmp_path / "pids"
    os.mkfifo(fifo)
    env = {**os.environ, "PYTHONPATH": str(SRC), "PIDS_FIFO": str(fifo)}
    mse = subprocess.Popen(
        [sys.executable, "-m", "mlua_swarm", "run", str(path), "--json", "--ephemeral"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    with open(fifo) as reader:
        pids = json.loads(reader.read())
    pidfds = [os.pidfd_open(pids["child"]), os.pidfd_open(pids["grandchild"])]
    try:
        mse.send_signal(signal.SIGINT)
        out, err = mse.communicate(timeout=60)
        assert mse.returncode == 130, err
        assert json.loads(out)["status"] == "cancelled"
        readable, _, _ = select.select(pidfds, [], [], 30)
        assert sorted(readable) == sorted(pidfds), "a worker process outlived Ctrl-C"
    finally:
        for fd in pidfds:
            os.close(fd)


def test_a_template_cwd_work_dir_follows_mse_run_work_dir(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "in.json").write_text('{"from": "work_dir"}')
    blueprint = {
        "id": "wd",
        "flow": {"kind": "step", "ref": "r", "in": {"op": "lit", "value": 1}, "out": {"op": "path", "at": "$.x"}},
        "subprocesses": [{"name": "t", "argv": ["cat", "in.json"], "cwd": "{work_dir}"}],
        "agents": [{"name": "r", "kind": "subprocess", "runner": {"backend": "subprocess", "template": "t"}}],
    }
    path = tmp_path / "bp.json"
    path.write_text(json.dumps(blueprint))
    proc = run_mse(["run", str(path), "--json", "--ephemeral", "--work-dir", str(work)])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json_of(proc)["final_ctx"]["x"] == {"from": "work_dir"}
