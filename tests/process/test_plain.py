"""Plain mode with real children: stdout is the value, exit 0 is ok, stderr is drained and tailed."""

import asyncio
from pathlib import Path

import pytest

from mlua_swarm.core.engine import Engine, TaskSpec
from mlua_swarm.errors import DispatchFailed
from mlua_swarm.tokens import CapToken, Role
from mlua_swarm.worker.process import ProcessSpawner
from mlua_swarm.worker.streams import STDERR_TAIL_BYTES

from ..conftest import run_one
from .helpers import Gate, progress_note, py


async def test_stdin_prompt_and_json_stdout_pass(engine: Engine, op: CapToken) -> None:
    outcome = await run_one(engine, op, ProcessSpawner("cat"), TaskSpec("echo", {"n": [1, 2]}))
    assert (outcome.kind, outcome.value) == ("pass", {"n": [1, 2]})


async def test_prose_stdout_is_wrapped_with_stderr_and_exit_zero_is_ok(engine: Engine, op: CapToken) -> None:
    spawner = ProcessSpawner.shell("echo hello; echo oops >&2")
    outcome = await run_one(engine, op, spawner, TaskSpec("sh", "ignored"))
    assert (outcome.kind, outcome.value) == ("pass", {"raw": "hello", "stderr": "oops\n"})


async def test_nonzero_exit_blocks_the_step_and_reports_the_exit_code(engine: Engine, op: CapToken) -> None:
    step = await engine.start_task(op, TaskSpec("fail", "x"))
    outcome = await engine.dispatch_attempt(op, step, ProcessSpawner.shell("echo '{\"why\": 1}'; echo bad >&2; exit 7"))
    assert (outcome.kind, outcome.value) == ("blocked", {"why": 1})
    stats = engine.worker_stats(step, 1)
    assert stats["exit_code"] == 7 and stats["stderr_tail"] == "bad\n" and stats["worker_kind"] == "subprocess"
    assert stats["adapter_data"] == {"exit_code": 7}


async def test_without_stdin_the_prompt_is_the_last_argument(engine: Engine, op: CapToken) -> None:
    spawner = py("print(json.dumps({'argv': sys.argv[1:], 'stdin': sys.stdin.read()}))", "first", use_stdin=False)
    outcome = await run_one(engine, op, spawner, TaskSpec("argv", {"k": "v"}))
    assert outcome.value == {"argv": ["first", '{"k":"v"}'], "stdin": ""}


async def test_the_child_gets_the_mse_environment_with_a_live_handle(
    engine: Engine, op: CapToken, tmp_path: Path
) -> None:
    """The handle and token in the environment resolve to this attempt's worker token while it runs."""
    code = """
        keys = ["MSE_TOKEN_AGENT_ID", "MSE_TOKEN_NONCE", "MSE_TOKEN", "MSE_TASK_ID", "MSE_ATTEMPT",
                "MSE_CTX_AGENT", "MSE_WORKER_HANDLE"]
        progress("env", json.dumps({k: os.environ.get(k) for k in keys}))
        open(sys.argv[1]).read()
        final("done")
    """
    gate = Gate(tmp_path)
    step = await engine.start_task(op, TaskSpec("envy", "x"))
    spawner = py(code, str(gate.path), stream_mode="ndjson_lines")
    async with engine.events() as events:
        dispatch = asyncio.create_task(engine.dispatch_attempt(op, step, spawner))
        env = await progress_note(events, "env")
        record = engine.resolve_handle(env["MSE_WORKER_HANDLE"])
        token = CapToken.decode(env["MSE_TOKEN"])
        assert record.step_id == step and token.fingerprint == record.token.fingerprint
        assert token.role is Role.WORKER and token.nonce == env["MSE_TOKEN_NONCE"]
        assert env["MSE_TOKEN_AGENT_ID"] == f"worker-of-{step}" and env["MSE_TASK_ID"] == step
        assert (env["MSE_ATTEMPT"], env["MSE_CTX_AGENT"]) == ("1", "envy")
        await gate.open()
        outcome = await dispatch
    assert outcome.value == "done"


async def test_huge_stderr_is_drained_and_only_its_tail_kept(engine: Engine, op: CapToken) -> None:
    code = """
        for i in range(4000):
            sys.stderr.write(f"line {i:05d} " + "x" * 500 + "\\n")
        sys.stderr.write("THE END")
        print(json.dumps("ok"))
    """
    step = await engine.start_task(op, TaskSpec("noisy", "x"))
    outcome = await engine.dispatch_attempt(op, step, py(code))
    stats = engine.worker_stats(step, 1)
    assert outcome.value == "ok"
    assert stats["stderr_bytes"] > 2_000_000
    assert len(stats["stderr_tail"].encode()) == STDERR_TAIL_BYTES
    assert stats["stderr_tail"].endswith("THE END") and "line 00000" not in stats["stderr_tail"]


async def test_stdout_over_the_limit_fails_the_attempt_with_the_reason(engine: Engine, op: CapToken) -> None:
    spawner = py("sys.stdout.write('x' * 100_000); sys.stdout.flush(); time.sleep(60)", max_frame_bytes=10_000)
    step = await engine.start_task(op, TaskSpec("big", "x"))
    with pytest.raises(DispatchFailed, match="stdout body exceeds 10000 bytes"):
        await engine.dispatch_attempt(op, step, spawner)
    assert engine.read_task_state(op, step).status == "failed"
    assert engine.worker_stats(step, 1)["signal"] == 15


async def test_a_missing_program_is_a_spawn_error(engine: Engine, op: CapToken, tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-program")
    step = await engine.start_task(op, TaskSpec("ghost", "x"))
    with pytest.raises(DispatchFailed, match=r"internal: spawn failed: .*no-such-program"):
        await engine.dispatch_attempt(op, step, ProcessSpawner(missing))
    assert engine.read_task_state(op, step).status == "failed"


async def test_a_prompt_that_cannot_be_an_argument_is_a_spawn_error(engine: Engine, op: CapToken) -> None:
    step = await engine.start_task(op, TaskSpec("nul", "a\x00b"))
    with pytest.raises(DispatchFailed, match="internal: spawn failed: echo: embedded null byte"):
        await engine.dispatch_attempt(op, step, ProcessSpawner("echo", use_stdin=False))


async def test_a_child_that_ignores_stdin_does_not_break_the_attempt(engine: Engine, op: CapToken) -> None:
    outcome = await run_one(engine, op, ProcessSpawner("true"), TaskSpec("t", "x" * 1_000_000))
    assert outcome.kind == "pass" and outcome.value == {"raw": "", "stderr": ""}


async def test_stderr_written_after_stdout_closed_is_still_in_the_tail(engine: Engine, op: CapToken) -> None:
    code = """
        print(json.dumps("value"), flush=True)
        os.close(1)
        sys.stderr.write("x" * 1_000_000 + "late words")
    """
    step = await engine.start_task(op, TaskSpec("late", "x"))
    outcome = await engine.dispatch_attempt(op, step, py(code))
    assert outcome.value == "value"
    stats = engine.worker_stats(step, 1)
    assert stats["stderr_tail"].endswith("late words") and stats["stderr_bytes"] == 1_000_010
