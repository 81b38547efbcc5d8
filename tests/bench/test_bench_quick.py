"""Smoke test: one of our workloads runs through the benchmark harness (child process, median, verdict).

It checks the harness works, not how fast anything is: performance is the benchmark suite's job.
"""

from __future__ import annotations

from bench.harness import Comparison, Measure, Probe, ProbeRunner, at_most, measure_row


def test_engine_sequence_probe_runs_in_a_child_and_yields_a_judged_row() -> None:
    log: list[str] = []
    runner = ProbeRunner(timeout_secs=120, rounds=2, log=log.append)
    ours = Measure("mlua-swarm", Probe.of("bench.ours_engine:seq_memory", n=5, reps=2), "us_per_step")
    row = measure_row(runner, "seq", Comparison("tiny sequence", "us/step", ours, targets=(at_most(1e9, "us"),)))

    assert row.ours.status == "ok", row.ours.note
    assert row.ours.value is not None and row.ours.value > 0
    assert row.result == "PASS"
    assert len(runner.run(ours.probe).samples["us_per_step"]) == 4, "2 rounds of 2 repetitions"
    assert sum("bench.ours_engine:seq_memory" in line for line in log) == 2


def test_the_whole_process_benchmark_runs_and_reports_each_case() -> None:
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-m", "bench.cli", "--repeat", "1", "--result-mb", "1", "--steps", "5,10"],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("at start: load average") and lines[-1].startswith("at end: load average")
    for case in ("mse --help", "mse runs list --limit 20 beside a 1 MB result", "terminal live view"):
        assert any(case in line for line in lines), case
