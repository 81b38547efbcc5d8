"""The progress view costs a step almost nothing: events update counters, drawing happens apart."""

from __future__ import annotations

import io
import time

from rich.console import Console

from mlua_swarm.ids import StepId
from mlua_swarm.run import progress as progress_module
from mlua_swarm.run.progress import REFRESH_PER_SECOND, TerminalProgress


def steps(view: TerminalProgress, count: int, ref: str = "inc", status: str = "passed") -> None:
    for i in range(count):
        step = StepId(f"ST-{i}")
        view.step_started(ref, step, None)
        view.step_finished(ref, step, status, 0.001, None)


def test_the_live_view_draws_at_its_frame_rate_not_per_step(monkeypatch: object) -> None:
    out = io.StringIO()
    view = TerminalProgress("count · R-1", console=Console(file=out, force_terminal=True, width=100))
    drawn = 0
    render = view._render

    def counting() -> object:
        nonlocal drawn
        drawn += 1
        return render()

    view._render = counting  # type: ignore[method-assign]
    started = time.monotonic()
    with view:
        steps(view, 5000)
        steps(view, 3, ref="check", status="failed")
    elapsed = time.monotonic() - started
    assert drawn <= elapsed * REFRESH_PER_SECOND + 4, (drawn, elapsed)
    text = out.getvalue()
    assert "3 failed, 5000 passed" in text
    assert "check" in text and "failed" in text


def test_plain_lines_then_periodic_summaries() -> None:
    out = io.StringIO()
    view = TerminalProgress("count · R-1", console=Console(file=out, force_terminal=False))
    with view:
        steps(view, progress_module.PLAIN_STEP_LINES + 50)
        steps(view, 1, ref="check", status="failed")
    lines = out.getvalue().splitlines()
    assert lines[0] == "▶ count · R-1"
    assert lines[1] == "  ✓ inc passed 1.0ms"
    assert sum(line.startswith("  ✓ inc passed") for line in lines) == progress_module.PLAIN_STEP_LINES
    assert lines[-1] == "  ✗ check failed 1.0ms"
    assert view.summary().startswith("1 failed, 250 passed in ")
