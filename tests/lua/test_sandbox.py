"""The sandbox itself: cancellation from another task, pool reuse, isolation between runs."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from mlua_swarm.dsl.sandbox import (
    AbortSignal,
    LuaAborted,
    LuaLimits,
    LuaPool,
    LuaRun,
    LuaSandbox,
    LuaScriptError,
    run_in_lua_thread,
)

UNLIMITED = LuaLimits(instructions=None, wall_secs=None, memory_bytes=None)


async def test_cancelling_the_awaiting_task_stops_the_script_and_waits_for_it() -> None:
    loop = asyncio.get_running_loop()
    started = asyncio.Event()
    finished: list[str] = []
    pool = LuaPool()
    signal = AbortSignal()

    def job(sandbox: LuaSandbox) -> LuaRun:
        try:
            return sandbox.run(
                "host.started() while true do end",
                "=spin",
                namespaces={"host": {"started": lambda: loop.call_soon_threadsafe(started.set)}},
                signal=signal,
                limits=UNLIMITED,
            )
        finally:
            finished.append("thread done")

    task = asyncio.create_task(run_in_lua_thread(pool, job, signal))
    async with asyncio.timeout(10):
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert finished == ["thread done"]
    assert signal.reason == "cancelled"


async def test_a_fired_signal_stops_a_script_and_names_the_reason() -> None:
    signal = AbortSignal()
    signal.fire("cancelled")
    with pytest.raises(LuaAborted) as raised:
        await run_in_lua_thread(LuaPool(), lambda sb: sb.run("return 1", "=x", signal=signal), signal)
    assert raised.value.reason == "cancelled"


def test_an_aborted_sandbox_is_not_reused() -> None:
    pool = LuaPool(max_idle=1)
    with pool.lease() as first:
        first.run("return 1", "=x")
    with pool.lease() as again:
        assert again is first
        with pytest.raises(LuaAborted):
            again.run("while true do end", "=x", limits=LuaLimits(instructions=100_000))
    with pool.lease() as fresh:
        assert fresh is not first
        assert fresh.run("return 2", "=x").value == 2


def test_globals_do_not_leak_between_runs_on_one_sandbox() -> None:
    sandbox = LuaSandbox()
    sandbox.run("leak = 1; table.insert = nil; math.pi = 3", "=x")
    assert sandbox.run("return { leak == nil, type(table.insert), math.pi > 3.14 }", "=x").value == [
        True,
        "function",
        True,
    ]


def test_print_goes_to_the_log_not_stdout(capsys: pytest.CaptureFixture[str], caplog: Any) -> None:
    caplog.set_level("INFO", logger="mlua_swarm.lua")
    LuaSandbox().run("print('hello', 1, nil)", "=x")
    assert capsys.readouterr().out == ""
    assert "hello\t1\tnil" in caplog.text


def test_load_of_text_runs_in_the_sandbox_environment() -> None:
    value = LuaSandbox().run("local f = load('return os == nil and type(string.format)') return f()", "=x").value
    assert value == "function"


def test_error_values_that_are_tables_keep_their_data() -> None:
    with pytest.raises(LuaScriptError) as raised:
        LuaSandbox().run("error({ code = 7, why = 'nope' })", "=x")
    assert raised.value.value == {"code": 7, "why": "nope"}


@pytest.mark.parametrize("source", ["return { s = 'ok\\255' }", "return 'ok\\255'"])
def test_invalid_utf8_strings_are_a_clear_error(source: str) -> None:
    with pytest.raises(LuaScriptError, match="not valid UTF-8"):
        LuaSandbox().run(source, "=x")
