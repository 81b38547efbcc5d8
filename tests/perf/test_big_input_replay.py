"""A step with a large input replays after a crash (issue #14: the replay key of a 1 MB input).

The replay key is the SHA-256 of the input's canonical JSON (`jsontext.canonical_bytes`): orjson's
encoding for plain JSON data, the standard library's for what orjson refuses. Both must give the
same key in a new process, or a resumed run pays again for steps it already finished.
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mlua_swarm.jsontext import canonical, canonical_bytes
from mlua_swarm.run.dispatcher import input_hash

from ..conftest import json_of, mse_env, run_mse, start_mse, wait_for_file

AGENTS = """
import asyncio, os, pathlib

def _log(name, value):
    with open(os.environ["STEP_LOG"], "a") as fh:
        fh.write(f"{name}:{value}\\n")

async def measure(inv):
    _log("measure", len(inv.input))
    return len(inv.input)

async def huge(inv):
    _log("huge", inv.input["huge"])
    return inv.input["huge"] % 1000

async def last(inv):
    if not pathlib.Path(os.environ["ALLOW_FILE"]).exists():
        pathlib.Path(os.environ["PARK_FILE"]).write_text("parked")
        await asyncio.Event().wait()
    _log("last", inv.input)
    return "done"
"""


def P(at: str) -> dict[str, str]:
    return {"op": "path", "at": at}


FLOW = {
    "kind": "seq",
    "children": [
        {"kind": "step", "ref": "measure", "in": P("$.big"), "out": P("$.size")},
        {"kind": "step", "ref": "huge", "in": P("$.odd"), "out": P("$.rest")},
        {"kind": "step", "ref": "last", "in": P("$.size"), "out": P("$.end")},
    ],
}


def big_object(keys: int) -> dict[str, Any]:
    """About 150 bytes a key, with numbers both encoders write their own way (tiny floats)."""
    return {f"k{i}": {"text": "x" * 100, "n": i, "tiny": i * 1e-9, "tags": ["é", "b"]} for i in range(keys)}


def test_a_resumed_run_replays_steps_whose_input_is_a_megabyte(tmp_path: Path) -> None:
    (tmp_path / "big_agents.py").write_text(AGENTS)
    agents = [
        {"name": n, "kind": "python", "spec": {"callable": f"big_agents:{n}"}} for n in ("measure", "huge", "last")
    ]
    bp = tmp_path / "bp.json"
    bp.write_text(json.dumps({"id": "big", "flow": FLOW, "agents": agents}))
    init = {"big": big_object(6_000), "odd": {"huge": 2**70 + 7, "items": list(range(1_000))}}
    init_file = tmp_path / "init.json"
    init_file.write_text(json.dumps(init))
    assert init_file.stat().st_size > 1_000_000
    env = {
        "MSE_HOME": str(tmp_path / "home"),
        "STEP_LOG": str(tmp_path / "steps.log"),
        "PARK_FILE": str(tmp_path / "parked"),
        "ALLOW_FILE": str(tmp_path / "allow"),
    }

    child = start_mse(["run", str(bp), "--init", f"@{init_file}", "--json"], env=env)
    wait_for_file(tmp_path / "parked", child)
    child.send_signal(signal.SIGKILL)
    child.wait(30)
    log = tmp_path / "steps.log"
    assert log.read_text().splitlines() == ["measure:6000", f"huge:{2**70 + 7}"]

    run_id = json_of(run_mse(["runs", "list", "--json"], env=env))[0]["run_id"]
    (tmp_path / "allow").write_text("")
    resumed = run_mse(["runs", "resume", run_id, "--json"], env=env)
    assert resumed.returncode == 0, resumed.stderr
    doc = json_of(resumed)
    assert doc["status"] == "done"
    assert (doc["final_ctx"]["size"], doc["final_ctx"]["rest"], doc["final_ctx"]["end"]) == (
        6_000,
        (2**70 + 7) % 1000,
        "done",
    )
    assert log.read_text().splitlines() == ["measure:6000", f"huge:{2**70 + 7}", "last:6000"]


@pytest.mark.parametrize(
    "value",
    [
        {"b": 1, "a": [1.5, None, True, "é\u2028\U0001f600"], "c": {"z": 0, "y": -0.0}},
        {"big": 2**70},
        {1: "int key"},
    ],
)
def test_equal_values_give_one_key_whatever_their_key_order(value: dict[Any, Any]) -> None:
    reordered = dict(reversed(list(value.items())))
    assert canonical_bytes(value) == canonical_bytes(reordered)
    assert input_hash(value) == input_hash(reordered)


def test_canonical_bytes_are_the_standard_librarys_text_for_ordinary_data() -> None:
    value = {"z": [1, 2.5, 1e20, None, False], "a": {"é": '\x00"\\', "b": 123456789012345}, "m": 0.0001}
    assert canonical_bytes(value) == canonical(value).encode()
    assert canonical_bytes({"n": 2**70}) == canonical({"n": 2**70}).encode()


def test_the_key_is_the_same_in_another_process() -> None:
    value = {f"k{i}": {"v": i / 7, "s": "é" * (i % 5), "t": [i, None, i * 1e-9]} for i in range(500)}
    probe = (
        "import json, sys; from mlua_swarm.run.dispatcher import input_hash; print(input_hash(json.load(sys.stdin)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        input=json.dumps(value),
        capture_output=True,
        text=True,
        env=mse_env({"PYTHONHASHSEED": "12345"}),
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() == input_hash(value) == hashlib.sha256(canonical_bytes(value)).hexdigest()
