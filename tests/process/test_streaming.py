"""Streaming modes with real children: events arrive live, parts fold, and every failure is reported."""

import asyncio
import json
from pathlib import Path

import pytest

from mlua_swarm.core.engine import Engine, TaskSpec
from mlua_swarm.errors import DispatchFailed
from mlua_swarm.tokens import CapToken
from mlua_swarm.worker.output import Artifact, Final, Inline, Progress
from mlua_swarm.worker.process import ProcessSpawner

from ..conftest import run_one
from .helpers import Gate, child_env, progress_note, py


async def test_ndjson_events_reach_the_tail_and_artifacts_become_parts(engine: Engine, op: CapToken) -> None:
    code = """
        task = json.loads(sys.stdin.read())
        progress("start")
        emit({"type": "artifact", "name": "verdict", "content": {"kind": "inline", "value": "PASS"}})
        emit({"type": "partial", "chunk": {"kind": "inline", "value": "half"}})
        final({"doubled": task["n"] * 2})
    """
    step = await engine.start_task(op, TaskSpec("s", {"n": 21}))
    outcome = await engine.dispatch_attempt(op, step, py(code, stream_mode="ndjson_lines"))
    assert (outcome.kind, outcome.value) == ("pass", {"out": {"doubled": 42}, "parts": {"verdict": "PASS"}})
    assert engine.output_tail(step, 1)[0] == Progress("start", None)
    assert engine.staged_parts(step, 1) == ["verdict"]
    stats = engine.worker_stats(step, 1)
    assert (stats["events"], stats["malformed_records"], stats["stream_mode"]) == (4, 0, "ndjson_lines")


async def test_progress_is_live_while_the_child_still_runs(engine: Engine, op: CapToken, tmp_path: Path) -> None:
    """The child blocks on a gate the test opens only after it saw the child's progress."""
    code = """
        progress("ready", json.dumps({"pid": os.getpid()}))
        open(sys.argv[1]).read()
        final("after")
    """
    gate = Gate(tmp_path)
    step = await engine.start_task(op, TaskSpec("live", "x"))
    spawner = py(code, str(gate.path), stream_mode="ndjson_lines")
    async with engine.events() as events:
        dispatch = asyncio.create_task(engine.dispatch_attempt(op, step, spawner))
        note = await progress_note(events, "ready")
        assert not dispatch.done() and note["pid"] > 0
        assert engine.read_task_state(op, step).status == "running"
        await gate.open()
        outcome = await dispatch
    assert outcome.value == "after"


async def test_sse_child(engine: Engine, op: CapToken) -> None:
    code = """
        sys.stdout.write(": hello\\nevent: output\\ndata: " + json.dumps({"type": "progress", "stage": "a"}) + "\\n\\n")
        body = json.dumps({"type": "final", "content": {"kind": "inline", "value": {"x": 1}}, "ok": True}, indent=1)
        sys.stdout.write("".join("data: " + line + "\\n" for line in body.splitlines()) + "\\n")
    """
    step = await engine.start_task(op, TaskSpec("sse", "x"))
    outcome = await engine.dispatch_attempt(op, step, py(code, stream_mode="sse_events"))
    assert outcome.value == {"x": 1}
    assert engine.output_tail(step, 1)[0] == Progress("a", None)


async def test_length_prefixed_child(engine: Engine, op: CapToken) -> None:
    code = """
        def frame(obj):
            data = json.dumps(obj).encode()
            sys.stdout.buffer.write(len(data).to_bytes(4, "big") + data)
        frame({"type": "artifact", "name": "log", "content": {"kind": "inline", "value": "line\\nbreaks ok"}})
        frame({"type": "final", "content": {"kind": "inline", "value": 7}, "ok": True})
    """
    outcome = await run_one(engine, op, py(code, stream_mode="length_prefixed"), TaskSpec("lp", "x"))
    assert outcome.value == {"out": 7, "parts": {"log": "line\nbreaks ok"}}


async def test_malformed_lines_are_counted_and_reported_as_progress(engine: Engine, op: CapToken) -> None:
    code = """
        print("this is prose")
        print('{"type": "final"}')
        for i in range(8):
            print(f"junk {i}")
        final("still fine")
    """
    step = await engine.start_task(op, TaskSpec("m", "x"))
    outcome = await engine.dispatch_attempt(op, step, py(code, stream_mode="ndjson_lines"))
    assert outcome.value == "still fine"
    reports = [e for e in engine.output_tail(step, 1) if isinstance(e, Progress)]
    assert len(reports) == 5 and all(r.stage == "malformed_output" for r in reports)
    assert "record 1: not JSON" in (reports[0].note or "") and "this is prose" in (reports[0].note or "")
    assert "content must be an object" in (reports[1].note or "")
    stats = engine.worker_stats(step, 1)
    assert stats["malformed_records"] == 10 and len(stats["malformed"]) == 5


async def test_no_final_gives_a_synthetic_failing_final(engine: Engine, op: CapToken) -> None:
    code = """
        progress("working")
        print("garbage")
        sys.stderr.write("why it went wrong")
    """
    step = await engine.start_task(op, TaskSpec("nf", "x"))
    outcome = await engine.dispatch_attempt(op, step, py(code, stream_mode="ndjson_lines"))
    assert outcome.kind == "blocked"
    assert outcome.value["note"] == "streaming mode: no Final event received"
    assert outcome.value["exit_success"] is True and outcome.value["malformed_records"] == 1
    assert outcome.value["first_malformed"].startswith("record 2: not JSON")
    assert outcome.value["stderr"] == "why it went wrong"


async def test_an_ok_final_with_a_failing_exit_code_blocks(engine: Engine, op: CapToken) -> None:
    code = """
        final({"claimed": "success"})
        sys.exit(3)
    """
    step = await engine.start_task(op, TaskSpec("x3", "x"))
    outcome = await engine.dispatch_attempt(op, step, py(code, stream_mode="ndjson_lines"))
    assert outcome.kind == "blocked"
    assert outcome.value["exit_code"] == 3 and outcome.value["final"] == {"claimed": "success"}
    assert "ended with exit code 3" in outcome.value["error"]
    tail = engine.output_tail(step, 1)
    assert tail[0] == Final(Inline({"claimed": "success"}), True) and isinstance(tail[1], Final) and not tail[1].ok


async def test_ok_from_final_lets_the_final_event_decide(engine: Engine, op: CapToken) -> None:
    code = """
        final("trust me")
        sys.exit(3)
    """
    spawner = py(code, stream_mode="ndjson_lines", ok_from="final")
    outcome = await run_one(engine, op, spawner, TaskSpec("x3", "x"))
    assert (outcome.kind, outcome.value) == ("pass", "trust me")


async def test_a_final_with_ok_false_blocks_with_its_value(engine: Engine, op: CapToken) -> None:
    outcome = await run_one(engine, op, py("final('nope', ok=False)", stream_mode="ndjson_lines"), TaskSpec("f", "x"))
    assert (outcome.kind, outcome.value) == ("blocked", "nope")


async def test_a_flood_without_newlines_fails_with_a_clear_reason_and_is_stopped(engine: Engine, op: CapToken) -> None:
    code = """
        chunk = "y" * 65536
        while True:
            sys.stdout.write(chunk)
    """
    step = await engine.start_task(op, TaskSpec("flood", "x"))
    spawner = py(code, stream_mode="ndjson_lines", max_frame_bytes=1_000_000, kill_grace_secs=5)
    with pytest.raises(DispatchFailed, match="child stdout line exceeds 1000000 bytes"):
        await engine.dispatch_attempt(op, step, spawner)
    stats = engine.worker_stats(step, 1)
    assert stats["signal"] == 15 and engine.read_task_state(op, step).status == "failed"


async def test_a_frame_length_over_the_limit_fails_the_attempt(engine: Engine, op: CapToken) -> None:
    code = """
        sys.stdout.buffer.write((50_000_000).to_bytes(4, "big"))
        sys.stdout.flush()
        time.sleep(60)
    """
    step = await engine.start_task(op, TaskSpec("lp", "x"))
    with pytest.raises(DispatchFailed, match="frame of 50000000 bytes exceeds 2097152 bytes"):
        await engine.dispatch_attempt(op, step, py(code, stream_mode="length_prefixed"))


async def test_a_final_rejected_by_the_verdict_contract_fails_with_the_reason(engine: Engine, op: CapToken) -> None:
    spec = TaskSpec("judge", "x", verdict={"channel": "body", "values": ["PASS", "FAIL"]})
    step = await engine.start_task(op, spec)
    with pytest.raises(DispatchFailed, match="Final rejected before output_tail: verdict value 'MAYBE'"):
        await engine.dispatch_attempt(op, step, py("final('MAYBE')", stream_mode="ndjson_lines"))


async def test_a_later_accepted_final_clears_an_earlier_rejection(engine: Engine, op: CapToken) -> None:
    spec = TaskSpec("judge", "x", verdict={"channel": "body", "values": ["PASS", "FAIL"]})
    outcome = await run_one(engine, op, py("final('MAYBE'); final('PASS')", stream_mode="ndjson_lines"), spec)
    assert outcome.value == "PASS"


async def test_the_child_helper_module_speaks_the_protocol(engine: Engine, op: CapToken) -> None:
    code = """
        from mlua_swarm import child
        task = child.read_input()
        me = child.context()
        child.progress("got", json.dumps(task))
        child.partial("p")
        child.artifact("who", {"agent": me.agent, "attempt": me.attempt, "handle": me.worker_handle[:3]})
        child.final(task["q"] + "!")
    """
    step = await engine.start_task(op, TaskSpec("helper", {"q": "hi"}))
    spawner = py(code, stream_mode="ndjson_lines", env=child_env())
    outcome = await engine.dispatch_attempt(op, step, spawner)
    assert outcome.value == {"out": "hi!", "parts": {"who": {"agent": "helper", "attempt": 1, "handle": "wh-"}}}
    assert engine.output_tail(step, 1)[0] == Progress("got", json.dumps({"q": "hi"}))
    assert isinstance(engine.output_tail(step, 1)[2], Artifact)


async def test_a_shell_pipeline_streams(engine: Engine, op: CapToken) -> None:
    events = """'{"type":"progress","stage":"sh"}' '{"type":"final","content":{"kind":"inline","value":"sh"}}'"""
    cmd = "printf '%s\\n' " + events
    outcome = await run_one(engine, op, ProcessSpawner.shell(cmd, stream_mode="ndjson_lines"), TaskSpec("sh", "x"))
    assert outcome.value == "sh"


async def test_an_ok_final_followed_by_a_crash_blocks_and_names_the_signal(engine: Engine, op: CapToken) -> None:
    code = """
        import signal
        final("almost")
        os.kill(os.getpid(), signal.SIGABRT)
    """
    outcome = await run_one(engine, op, py(code, stream_mode="ndjson_lines"), TaskSpec("crash", "x"))
    assert outcome.kind == "blocked"
    assert (outcome.value["exit_code"], outcome.value["signal"]) == (None, 6)
    assert "killed by signal 6" in outcome.value["error"]
