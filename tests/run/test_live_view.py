"""The terminal live view: what `mse run` draws on a real pseudo-terminal while a run goes, and what
one frame of it holds."""

from __future__ import annotations

import io
import json
import os
import re
import sys
from pathlib import Path

from rich.console import Console

from mlua_swarm.run.progress import TerminalProgress

from ..conftest import mse_env
from ..ptyterm import PtyProcess

AGENTS = """
import os

async def double(inv):
    return inv.input * 2

def hold(inv):
    # blocks (in its worker thread) until the test writes a line into the fifo
    with open(os.environ["HOLD_FIFO"]) as fifo:
        return fifo.readline().strip()
"""


def _at(path: str) -> dict[str, str]:
    return {"op": "path", "at": path}


def test_the_live_view_shows_the_running_step_and_the_finished_ones(tmp_path: Path) -> None:
    (tmp_path / "view_agents.py").write_text(AGENTS)
    fifo = tmp_path / "hold.fifo"
    os.mkfifo(fifo)
    blueprint = {
        "id": "live-view",
        "flow": {
            "kind": "seq",
            "children": [
                {"kind": "step", "ref": "prep", "in": _at("$.n"), "out": _at("$.n")},
                {"kind": "step", "ref": "hold", "in": _at("$.n"), "out": _at("$.said")},
            ],
        },
        "agents": [
            {"name": "prep", "kind": "python", "spec": {"callable": "view_agents:double"}},
            {"name": "hold", "kind": "python", "spec": {"callable": "view_agents:hold"}},
        ],
    }
    path = tmp_path / "bp.json"
    path.write_text(json.dumps(blueprint))
    argv = [sys.executable, "-m", "mlua_swarm", "run", str(path), "--ephemeral", "--init", '{"n": 21}']
    term = PtyProcess(argv, mse_env({"HOLD_FIFO": str(fifo)}), stderr_only=True, size=(30, 100))
    try:
        # drawn while `hold` blocks: the header with the totals so far, the running step, the finished one
        term.expect(
            r"live-view · R-[0-9a-f]{16}  1 passed in \d+\.\d\ds\s*\r?\n"
            r"⠿  hold  running\s*\r?\n"
            r"✓  prep  passed  \d+\.\dms"
        )
        with open(fifo, "w") as release:
            release.write("released\n")
        term.expect(r"■ done: 2 passed in \d+\.\d\ds")
    finally:
        if term.proc.poll() is None and not re.search("■ done", term.text):
            term.proc.kill()
        code, stdout = term.finish()
    assert code == 0, term.text
    assert json.loads(stdout) == {"n": 42, "said": "released"}
    assert "Traceback" not in term.text


class _Writes(io.StringIO):
    """A terminal stand-in that counts its writes."""

    writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)

    def isatty(self) -> bool:
        return True


def test_step_events_only_count_and_never_draw() -> None:
    out = _Writes()
    progress = TerminalProgress("bp · R-1", console=Console(file=out, force_terminal=True, width=80))
    for _ in range(1000):
        progress.step_started("lane", None, None)
    for _ in range(998):
        progress.step_finished("lane", None, "passed", 0.0012, None)
    progress.step_finished("lane", None, "failed", 0.5, "boom")
    assert out.writes == 0
    assert progress.running == {"lane": 1}
    assert dict(progress.totals) == {"passed": 998, "failed": 1}


def test_a_frame_counts_lanes_together_and_aligns_the_recent_steps() -> None:
    console = Console(file=io.StringIO(), force_terminal=True, width=60, record=True)
    progress = TerminalProgress("bp · R-1", console=console)
    for ref in ("lane", "lane", "lane", "judge"):
        progress.step_started(ref, None, None)
    progress.step_finished("lane", None, "passed", 0.0015, None)
    progress.step_finished("judge", None, "failed", 0.25, "no")
    progress.step_finished("prep", None, "replayed", 0.0, None)
    console.print(progress._render())
    lines = console.export_text().splitlines()
    assert re.fullmatch(r"bp · R-1  1 failed, 1 passed, 1 replayed in \d+\.\d\ds", lines[0])
    assert lines[1:] == [
        "⠿  lane x2  running",
        "✓  lane   passed    1.5ms",
        "✗  judge  failed    250.0ms",
        "↺  prep   replayed  0.0ms",
    ]
