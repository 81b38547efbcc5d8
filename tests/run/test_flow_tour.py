"""docs/flow.md's tour: the command it shows, run in `examples/` as a user would, prints what it shows."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

from ..conftest import run_mse

ROOT = Path(__file__).resolve().parents[2]


def test_the_flow_tour_prints_what_the_doc_shows() -> None:
    doc = (ROOT / "docs" / "flow.md").read_text()
    console = re.search(r"```console\n\$ cd examples\n\$ mse ([^\n]+)\n(.*?)```", doc, re.S)
    assert console is not None, "docs/flow.md lost its tour command"
    args, shown = shlex.split(console.group(1)), json.loads(console.group(2))
    proc = run_mse(args, cwd=ROOT / "examples")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == shown
    # every node kind is in the example the doc walks through
    kinds = set(re.findall(r'"kind": "(\w+)"', (ROOT / "examples" / "flow_tour.json").read_text()))
    assert kinds >= {"step", "seq", "branch", "loop", "fanout", "try", "assign"}
