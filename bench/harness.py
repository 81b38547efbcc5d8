"""Run probes in fresh child processes and turn their samples into figures, ratios and verdicts.

A probe is a plain function `module:function(**kwargs) -> dict[str, float | list[float]]` that
measures one thing and returns named metrics (a list holds one sample per repetition; the figure
is its median). Each probe runs in its own interpreter so peers' global state (DBOS), imports and
memory never leak into another measurement; both sides of a comparison still run in the same
`python -m bench` invocation on the same machine.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

REPO_ROOT = Path(__file__).resolve().parent.parent

Metrics = dict[str, float | list[float]]


class Unavailable(Exception):
    """A probe cannot run here: a peer is not installed, or the part of ours it needs has not landed."""


def needs(module: str, *, ours: bool) -> Any:
    """Import `module`, or raise `Unavailable` saying whether a peer is missing or ours is not there yet."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        reason = f"not available yet ({exc})" if ours else f"not installed ({exc.name or module})"
        raise Unavailable(reason) from exc


def median_of(samples: Sequence[float]) -> float:
    """The median of a probe's repetitions."""
    return float(statistics.median(samples))


@dataclass(frozen=True)
class Probe:
    """One measurement to run in a child process: `target` is `module:function`."""

    target: str
    kwargs_json: str = "{}"

    @classmethod
    def of(cls, target: str, **kwargs: Any) -> Probe:
        return cls(target, json.dumps(kwargs, sort_keys=True))

    def describe(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in json.loads(self.kwargs_json).items())
        return f"{self.target}({args})"


Status = Literal["ok", "unavailable", "error"]


@dataclass(frozen=True)
class ProbeResult:
    """A probe's samples per metric (all rounds together), or why there are none."""

    status: Status
    samples: Mapping[str, list[float]] = field(default_factory=dict)
    note: str = ""

    def figure(self, metric: str) -> float | None:
        """The median of the metric's samples."""
        values = self.samples.get(metric) if self.status == "ok" else None
        return median_of(values) if values else None

    def best(self, metric: str) -> float | None:
        """The lowest sample: what the step costs when nothing else on the machine gets in the way."""
        values = self.samples.get(metric) if self.status == "ok" else None
        return min(values) if values and len(values) > 1 else None

    def merged(self, later: ProbeResult) -> ProbeResult:
        """This result with a later round's samples added (a failing round ends the probe)."""
        if later.status != "ok":
            return later
        combined = {k: [*self.samples.get(k, []), *v] for k, v in later.samples.items()}
        return ProbeResult("ok", combined)


class ProbeRunner:
    """Runs each distinct probe once per invocation, in fresh interpreters, with a time limit.

    The probes of one comparison run interleaved in `rounds` rounds (ours, peer, floor, ours, ...),
    so a burst of load on the machine hits every side alike instead of skewing one ratio.
    """

    def __init__(self, timeout_secs: float, rounds: int, log: Callable[[str], None]) -> None:
        self.timeout_secs = timeout_secs
        self.rounds = rounds
        self._log = log
        self._cache: dict[Probe, ProbeResult] = {}

    def run(self, probe: Probe) -> ProbeResult:
        """The probe's result, running it (alone) first if this invocation has not yet."""
        self.run_interleaved([probe])
        return self._cache[probe]

    def run_interleaved(self, probes: Sequence[Probe], rounds: int | None = None) -> None:
        """Run every probe not yet measured, round-robin, `rounds` times each (default: the runner's)."""
        pending = [p for p in dict.fromkeys(probes) if p not in self._cache]
        total = min(rounds, self.rounds) if rounds is not None else self.rounds
        for round_no in range(total):
            for probe in pending:
                previous = self._cache.get(probe)
                if previous is not None and previous.status != "ok":
                    continue
                self._log(f"  [{round_no + 1}/{total}] {probe.describe()}")
                result = self._spawn(probe)
                self._log(f"    -> {result.status} {_summary(result)}")
                self._cache[probe] = result if previous is None else previous.merged(result)

    def _spawn(self, probe: Probe) -> ProbeResult:
        env = dict(os.environ)
        paths = [str(REPO_ROOT / "src"), str(REPO_ROOT), env.get("PYTHONPATH", "")]
        env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
        argv = [sys.executable, "-m", "bench.probe", probe.target, probe.kwargs_json]
        try:
            proc = subprocess.run(
                argv, capture_output=True, text=True, timeout=self.timeout_secs, env=env, cwd=REPO_ROOT, check=False
            )
        except subprocess.TimeoutExpired:
            return ProbeResult("error", note=f"timed out after {self.timeout_secs:.0f}s")
        lines = proc.stdout.strip().splitlines()
        if proc.returncode != 0 or not lines:
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            return ProbeResult("error", note=f"exit {proc.returncode}: {tail[:200]}")
        reply = json.loads(lines[-1])
        if "unavailable" in reply:
            return ProbeResult("unavailable", note=str(reply["unavailable"]))
        return ProbeResult("ok", {k: _as_samples(v) for k, v in reply["metrics"].items()})


def _as_samples(value: float | list[float]) -> list[float]:
    return [float(v) for v in value] if isinstance(value, list) else [float(value)]


def _summary(result: ProbeResult) -> str:
    if result.status != "ok":
        return result.note
    return ", ".join(f"{k}={median_of(v):.4g}" for k, v in result.samples.items())


@dataclass(frozen=True)
class Measure:
    """Which metric of which probe a table cell shows, with a label for the side it stands for."""

    label: str
    probe: Probe
    metric: str
    with_min: bool = True
    """Show the lowest sample too (meaningless for a difference of two timings)."""


@dataclass(frozen=True)
class Target:
    """A goal from the issue; `check(ours, peer, floor)` is None when a figure it needs is missing."""

    text: str
    check: Callable[[float | None, float | None, float | None], bool | None]


def at_most(limit: float, unit: str) -> Target:
    return Target(f"<= {limit:g} {unit}", lambda ours, _p, _f: None if ours is None else ours <= limit)


def exactly(value: float, unit: str) -> Target:
    return Target(f"= {value:g} {unit}", lambda ours, _p, _f: None if ours is None else ours == value)


def cheaper_than_peer(factor: float) -> Target:
    """The peer's figure is at least `factor` times ours."""

    def check(ours: float | None, peer: float | None, _f: float | None) -> bool | None:
        if ours is None or peer is None:
            return None
        return peer >= factor * ours

    return Target(f">= {factor:g}x cheaper than peer", check)


def within_floor(factor: float) -> Target:
    """Ours is at most `factor` times the floor's figure."""

    def check(ours: float | None, _p: float | None, floor: float | None) -> bool | None:
        if ours is None or floor is None:
            return None
        return ours <= factor * floor

    return Target(f"<= {factor:g}x the floor", check)


@dataclass(frozen=True)
class Comparison:
    """One table row: our figure, optionally a peer's and a floor's from the same run, and the targets."""

    case: str
    unit: str
    ours: Measure
    peer: Measure | None = None
    floor: Measure | None = None
    targets: tuple[Target, ...] = ()
    rounds: int | None = None
    """At most this many rounds for the row's probes (a peak RSS does not need a median of runs)."""


@dataclass(frozen=True)
class Workload:
    """A named group of rows with a paragraph on how both sides are measured."""

    name: str
    title: str
    method: str
    rows: Callable[[bool], list[Comparison]]


@dataclass(frozen=True)
class Cell:
    """One side's figure in a row, or the reason it has none."""

    label: str
    value: float | None
    status: Status
    note: str
    best: float | None = None


@dataclass(frozen=True)
class Row:
    """A measured comparison: figures, ratios and the verdict per target."""

    workload: str
    case: str
    unit: str
    ours: Cell
    peer: Cell | None
    floor: Cell | None
    verdicts: tuple[tuple[str, bool | None], ...]

    @property
    def peer_ratio(self) -> float | None:
        """How many times the peer's figure is ours (above 1: we are cheaper)."""
        return _ratio(self.peer.value if self.peer else None, self.ours.value)

    @property
    def floor_ratio(self) -> float | None:
        """How many times the floor ours is (1 would be the bare Python cost)."""
        return _ratio(self.ours.value, self.floor.value if self.floor else None)

    @property
    def result(self) -> str:
        if not self.verdicts:
            return ""
        values = [v for _, v in self.verdicts]
        if any(v is False for v in values):
            return "MISS"
        if all(v is True for v in values):
            return "PASS"
        return "n/a"


def _ratio(top: float | None, bottom: float | None) -> float | None:
    if top is None or bottom is None or bottom == 0:
        return None
    return top / bottom


def _cell(runner: ProbeRunner, measure: Measure | None) -> Cell | None:
    if measure is None:
        return None
    result = runner.run(measure.probe)
    value = result.figure(measure.metric)
    if result.status == "ok" and value is None:
        return Cell(measure.label, None, "error", f"probe gave no metric {measure.metric!r}")
    best = result.best(measure.metric) if measure.with_min else None
    return Cell(measure.label, value, result.status, result.note, best)


def measure_row(runner: ProbeRunner, workload: str, cmp: Comparison) -> Row:
    """Run (or reuse) the probes behind one comparison and judge its targets."""
    runner.run_interleaved([m.probe for m in (cmp.ours, cmp.peer, cmp.floor) if m is not None], cmp.rounds)
    ours = _cell(runner, cmp.ours)
    assert ours is not None
    peer = _cell(runner, cmp.peer)
    floor = _cell(runner, cmp.floor)
    verdicts = tuple(
        (t.text, t.check(ours.value, peer.value if peer else None, floor.value if floor else None)) for t in cmp.targets
    )
    return Row(workload, cmp.case, cmp.unit, ours, peer, floor, verdicts)
