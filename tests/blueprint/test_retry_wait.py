"""A retry policy that can wait longer than a day between two attempts is refused when the Blueprint
compiles (a large `backoff_factor` without `max_backoff_ms` grows past any clock), with its code,
place and hint; `mse bp lint` and `mse run` exit 2 before anything runs. A policy with no backoff
never waits, however large its factor."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mlua_swarm import WorkerInvocation
from mlua_swarm.blueprint.compiler import MAX_RETRY_WAIT_MS, compile_blueprint
from mlua_swarm.core.config import RetryPolicy
from mlua_swarm.run import run_blueprint
from tests.conftest import run_mse

from .helpers import agent, blueprint, compile_errors, compile_ok, only, step


def retried(**retry: Any) -> dict[str, Any]:
    return blueprint(step("a"), agent("a", retry=retry))


@pytest.mark.parametrize(
    "retry",
    [
        {"max_attempts": 3, "backoff_ms": 10, "backoff_factor": 1e308},
        {"max_attempts": 40, "backoff_ms": 1000, "backoff_factor": 2.0},
        {"max_attempts": 2, "backoff_ms": MAX_RETRY_WAIT_MS + 1},
        {"max_attempts": 9, "backoff_ms": 1000, "backoff_factor": 10.0, "max_backoff_ms": 10**12},
    ],
)
def test_a_policy_that_can_wait_longer_than_a_day_is_refused(retry: dict[str, Any]) -> None:
    found = only(compile_errors(retried(**retry)), "retry-backoff-too-long")
    assert found.location.json_path == "$.agents[0].retry" and found.location.name == "a"
    assert "max_backoff_ms" in (found.hint or "") and str(MAX_RETRY_WAIT_MS) in (found.hint or "")


def test_the_message_says_forever_for_a_wait_past_any_clock() -> None:
    found = only(compile_errors(retried(max_attempts=3, backoff_ms=10, backoff_factor=1e308)), "retry-backoff-too-long")
    assert "would wait forever before its last attempt" in found.message


@pytest.mark.parametrize(
    "retry",
    [
        {"max_attempts": 3, "backoff_ms": 10, "backoff_factor": 1e308, "max_backoff_ms": 60_000},
        {"max_attempts": 10**9, "backoff_ms": 10, "backoff_factor": 1e308, "max_backoff_ms": MAX_RETRY_WAIT_MS},
        {"max_attempts": 10, "backoff_ms": 1000, "backoff_factor": 2.0},
        {"max_attempts": 2, "backoff_ms": MAX_RETRY_WAIT_MS},
        {"max_attempts": 5, "backoff_factor": 1e308},
        {"max_attempts": 1, "backoff_ms": 10, "backoff_factor": 1e308},
    ],
)
def test_a_policy_whose_every_wait_is_at_most_a_day_compiles(retry: dict[str, Any]) -> None:
    compiled = compile_ok(retried(**retry))
    policy = compiled.agents["a"].retry
    assert isinstance(policy, RetryPolicy) and policy.longest_wait_ms() <= MAX_RETRY_WAIT_MS


async def _fails(inv: WorkerInvocation) -> Any:
    raise RuntimeError("down")


async def test_a_huge_factor_with_no_backoff_retries_at_once_instead_of_overflowing() -> None:
    raw = {
        "id": "t",
        "flow": step("boom", "$.out", "$"),
        "agents": [
            {
                "name": "boom",
                "kind": "rust_fn",
                "spec": {"fn_id": "boom"},
                "retry": {"max_attempts": 4, "backoff_factor": 1e308},
            }
        ],
    }
    result = await run_blueprint(compile_blueprint(raw, base_dir=Path.cwd(), fns={"boom": _fails}), {})
    assert result.status == "failed"
    assert "down" in str(result.error) and "Overflow" not in str(result.error)


def test_mse_lint_and_run_exit_2_before_anything_runs(tmp_path: Path) -> None:
    ran = tmp_path / "ran"
    raw = {
        "id": "forever",
        "flow": step("a", "$.out", "$"),
        "agents": [
            {
                "name": "a",
                "kind": "subprocess",
                "spec": {"program": "sh", "args": ["-c", f"touch {ran}; exit 3"]},
                "retry": {"max_attempts": 3, "backoff_ms": 10, "backoff_factor": 1e308, "on": ["failed", "blocked"]},
            }
        ],
    }
    file = tmp_path / "forever.json"
    file.write_text(json.dumps(raw))
    for args in (["bp", "lint", str(file)], ["run", str(file), "--ephemeral"]):
        proc = run_mse(args, cwd=tmp_path)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        shown = proc.stdout + proc.stderr
        assert "retry-backoff-too-long" in shown and "$.agents[0].retry" in shown and "hint:" in shown
        assert "Traceback" not in shown
    assert not ran.exists()
