"""Shared fixtures: an engine with an operator token, and a helper to run one step."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from mlua_swarm.core.engine import DispatchOutcome, Engine, TaskSpec
from mlua_swarm.tokens import CapToken
from mlua_swarm.worker.adapter import SpawnerAdapter

from .pgcluster import pg_cluster, pg_url  # noqa: F401  (fixtures: a throwaway PostgreSQL)

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(autouse=True, scope="session")
def _private_mse_home(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Runs the tests start (in process or as `mse` children) never touch the real ~/.mse."""
    os.environ.setdefault("MSE_HOME", str(tmp_path_factory.mktemp("mse-home")))


@pytest.fixture
def engine() -> Engine:
    return Engine()


@pytest.fixture
def op(engine: Engine) -> CapToken:
    return engine.attach("test-operator")


async def run_one(engine: Engine, op: CapToken, spawner: SpawnerAdapter, spec: TaskSpec) -> DispatchOutcome:
    step = await engine.start_task(op, spec)
    return await engine.run_step(op, step, spawner)


def alive(pid: int) -> bool:
    """Whether `pid` is a live process: a zombie has ended (it only waits for a parent to collect it,
    which, for a process re-parented to a subreaper that never waits, may be never)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def P(at: str) -> dict[str, Any]:
    """A flow path expression."""
    return {"op": "path", "at": at}


PREP_THEN_WORK: dict[str, Any] = {
    "kind": "seq",
    "children": [
        {"kind": "step", "ref": "prep", "in": P("$.n"), "out": P("$.n")},
        {"kind": "step", "ref": "work", "in": P("$.n"), "out": P("$.out")},
    ],
}
"""`prep` then `work`: prep gets `$.n` and writes `$.n`, work gets `$.n` and writes `$.out`."""


def fn_blueprint(flow: dict[str, Any], fns: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A Blueprint whose agents are `rust_fn` agents named after their function ids."""
    agents = [{"name": name, "kind": "rust_fn", "spec": {"fn_id": name}} for name in fns]
    return {"id": "t", "flow": flow, "agents": agents, **extra}


def compile_fns(flow: dict[str, Any], fns: dict[str, Any], **extra: Any) -> Any:
    """`fn_blueprint` compiled with `fns` as its function registry."""
    from mlua_swarm.blueprint.compiler import compile_blueprint

    return compile_blueprint(fn_blueprint(flow, fns, **extra), base_dir=Path.cwd(), fns=fns)


def mse_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """This environment plus `env`, with the package importable from `src`."""
    full_env = {**os.environ, **(env or {})}
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), full_env.get("PYTHONPATH")]))
    return full_env


MODULES_PROBE = """
import json, sys
from mlua_swarm.cli.main import main
try:
    code = main(sys.argv[1:])
except SystemExit as stop:
    code = stop.code
sys.stdout.flush()
print("\\n" + json.dumps(sorted(sys.modules)), file=sys.stderr)
sys.exit(code)
"""


def mse_modules(args: Sequence[str], home: Path) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """`mse ARGS` in a child interpreter with `MSE_HOME` at `home`: what it printed, and every module it
    had loaded when it ended (the last line of its stderr)."""
    proc = subprocess.run(
        [sys.executable, "-c", MODULES_PROBE, *args],
        capture_output=True,
        text=True,
        env=mse_env({"MSE_HOME": str(home)}),
        timeout=120,
    )
    return proc, set(json.loads(proc.stderr.strip().splitlines()[-1]))


def run_mse(
    args: Sequence[str], *, env: dict[str, str] | None = None, input: str | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real `mse` command line in a child interpreter."""
    return subprocess.run(
        [sys.executable, "-m", "mlua_swarm", *args],
        capture_output=True,
        text=True,
        env=mse_env(env),
        input=input,
        cwd=cwd,
        timeout=120,
    )


SIGINT_AT_DEFAULT = (
    "import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "runpy.run_module('mlua_swarm', run_name='__main__', alter_sys=True)"
)
"""`python -m mlua_swarm` with Ctrl-C's SIGINT handled as in a terminal's foreground command: a test
suite started as a background job inherits SIGINT ignored, and Python then leaves it ignored."""


def start_mse(args: Sequence[str], *, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start `mse` in a child interpreter without waiting (stdout and stderr piped, as text); SIGINT
    reaches it as a Ctrl-C would, whatever the tests' own process inherited."""
    return subprocess.Popen(
        [sys.executable, "-c", SIGINT_AT_DEFAULT, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=mse_env(env),
    )


def wait_for_file(path: Path, child: subprocess.Popen[str], timeout: float = 60) -> None:
    """Wait until a worker in `child` creates `path` (its signal that it is running)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert child.poll() is None, child.stderr.read() if child.stderr else ""
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


def json_of(proc: subprocess.CompletedProcess[str]) -> Any:
    import json

    return json.loads(proc.stdout)
