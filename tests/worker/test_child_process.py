"""The child's plumbing in `worker/process.py`: pipes served by loop readers, the exit seen through a pidfd."""

from __future__ import annotations

import asyncio
import errno
import gc
import os
import signal
import sys
import threading
import warnings
from pathlib import Path

import pytest

from mlua_swarm.core.engine import Engine, TaskSpec
from mlua_swarm.errors import DispatchFailed
from mlua_swarm.server.serve import bind_socket
from mlua_swarm.tokens import CapToken
from mlua_swarm.worker import process
from mlua_swarm.worker.process import ChildProcess, ProcessSpawner

from ..conftest import run_one

SAFETY_SECS = 30.0
ENV = {os.fsencode(key): os.fsencode(value) for key, value in os.environ.items()}


def pipes_and_pidfds() -> set[str]:
    """This process's open pipes and pidfds, as `fd -> target` (other fds come and go: the /proc sweeper
    opens files in its own thread)."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("pipe:") or target == "anon_inode:[pidfd]":
            found.add(f"{fd} -> {target}")
    return found


async def test_a_prompt_larger_than_the_pipe_buffers_comes_back_whole_through_cat() -> None:
    """stdin is written as the child reads it; stdout reading pauses while its buffer is full."""
    prompt = bytes(range(256)) * 8192  # 2 MiB: many times a pipe's buffer and the reader's limit
    child = ChildProcess.start(["cat"], True, None, ENV)
    child.write_stdin(prompt)
    async with asyncio.timeout(SAFETY_SECS):
        echoed = bytearray()
        while chunk := await child.stdout.read(4096):
            echoed += chunk
            await asyncio.sleep(0)  # a slow consumer: the reader's buffer fills while cat keeps writing
        assert await child.wait() == 0
    assert echoed == prompt


async def test_a_child_that_never_reads_its_stdin_is_not_an_error(engine: Engine, op: CapToken) -> None:
    prompt = "x" * (4 * 2**20)  # larger than any pipe buffer: the write is still pending when `true` exits
    outcome = await run_one(engine, op, ProcessSpawner("true"), TaskSpec("deaf", prompt))
    assert outcome.kind == "pass"


async def test_no_thread_waits_for_a_child() -> None:
    threads = threading.active_count()
    children = [ChildProcess.start(["cat"], True, None, ENV) for _ in range(5)]
    # five children alive at once, each blocked reading its stdin
    assert threading.active_count() == threads
    for n, child in enumerate(children):
        child.write_stdin(str(n).encode())
    async with asyncio.timeout(SAFETY_SECS):
        assert [await child.stdout.read() for child in children] == [b"0", b"1", b"2", b"3", b"4"]
        assert [await child.wait() for child in children] == [0] * 5


@pytest.mark.parametrize("pidfd", [True, False], ids=["pidfd", "waiting-thread"])
async def test_the_exit_code_and_the_killing_signal_are_reported(pidfd: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if not pidfd:

        def unsupported(pid: int, flags: int = 0) -> int:
            raise OSError(errno.ENOSYS, "pidfd_open is not supported")

        monkeypatch.setattr(os, "pidfd_open", unsupported)
    exits = ChildProcess.start(["sh", "-c", "exit 3"], False, None, ENV)
    sleeper = ChildProcess.start(["sleep", "1000"], False, None, ENV)
    async with asyncio.timeout(SAFETY_SECS):
        assert await exits.wait() == 3
        assert not sleeper.exited.done()
        os.kill(sleeper.pid, signal.SIGKILL)
        assert await sleeper.wait() == -signal.SIGKILL


async def test_the_child_sees_the_environment_as_it_is_when_it_starts(
    engine: Engine, op: CapToken, monkeypatch: pytest.MonkeyPatch
) -> None:
    spawner = ProcessSpawner.shell('printf \'{"late": "%s", "gone": "%s"}\' "$MSE_TEST_LATE" "${MSE_TEST_GONE-unset}"')
    monkeypatch.setenv("MSE_TEST_GONE", "here")
    outcome = await run_one(engine, op, spawner, TaskSpec("env", "x"))
    assert outcome.value == {"late": "", "gone": "here"}
    monkeypatch.setenv("MSE_TEST_LATE", "set after start-up")
    monkeypatch.delenv("MSE_TEST_GONE")
    outcome = await run_one(engine, op, spawner, TaskSpec("env", "x"))
    assert outcome.value == {"late": "set after start-up", "gone": "unset"}


async def test_finished_children_leave_nothing_behind(engine: Engine, op: CapToken) -> None:
    """No open pipe or pidfd, no `subprocess` warning about a child it thinks is still running."""
    fds = pipes_and_pidfds()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for n in range(5):
            outcome = await run_one(engine, op, ProcessSpawner("cat"), TaskSpec("echo", {"n": n}))
            assert outcome.value == {"n": n}
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []
    assert pipes_and_pidfds() <= fds


async def test_a_program_that_cannot_start_fails_the_spawn_and_leaks_no_pipe(engine: Engine, op: CapToken) -> None:
    fds = pipes_and_pidfds()
    for argv in (["/nonexistent/mse-test-program"], ["cat", "nul\0byte"]):
        step = await engine.start_task(op, TaskSpec("missing", "x"))
        with pytest.raises(DispatchFailed, match=f"internal: spawn failed: {argv[0]}"):
            await engine.dispatch_attempt(op, step, ProcessSpawner(argv[0], argv[1:]))
    assert pipes_and_pidfds() <= fds


@pytest.mark.parametrize("session", [False, True], ids=["no-terminal", "terminal"])
async def test_the_child_leads_its_own_process_group_and_its_own_session_only_beside_a_terminal(
    session: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(process, "_new_session", lambda: session)
    report = "import os; print(os.getpid(), os.getpgid(0), os.getsid(0))"
    child = ChildProcess.start([sys.executable, "-c", report], False, None, ENV)
    async with asyncio.timeout(SAFETY_SECS):
        pid, group, sid = map(int, (await child.stdout.read()).split())
        assert await child.wait() == 0
    assert pid == group == child.pid
    assert sid == (child.pid if session else os.getsid(0))


def test_a_session_of_its_own_is_given_only_when_this_process_has_a_controlling_terminal() -> None:
    try:
        os.close(os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY))
        has_terminal = True
    except OSError:
        has_terminal = False
    process._new_session.cache_clear()
    assert process._new_session() is has_terminal


FD_REPORT = (
    "import os\n"
    "for fd in sorted(map(int, os.listdir('/proc/self/fd'))):\n"
    "    try: print(fd, os.readlink(f'/proc/self/fd/{fd}'))\n"
    "    except OSError: pass\n"
)
"""A child that prints each descriptor it holds and what it points to."""


def open_in_child(report: bytes) -> dict[int, str]:
    return {int(fd): target for fd, target in (line.split(" ", 1) for line in report.decode().splitlines())}


async def test_a_child_holds_no_pipe_of_another_child_running_beside_it() -> None:
    """Our ends of a child's pipes are closed on `exec`, so a second child started while the first
    runs holds only its own stdin, stdout and stderr among them."""
    first = ChildProcess.start(["cat"], True, None, ENV)
    first_pipes = {f"pipe:[{os.fstat(fd).st_ino}]" for fd in (first._stdin, first._stdout, first._stderr) if fd}
    try:
        second = ChildProcess.start([sys.executable, "-c", FD_REPORT], True, None, ENV)
        second.write_stdin(b"")
        async with asyncio.timeout(SAFETY_SECS):
            held = open_in_child(await second.stdout.read())
            assert await second.wait() == 0
        assert len(first_pipes) == 3
        assert first_pipes.isdisjoint(held.values())
        assert all(held[fd].startswith("pipe:") for fd in (0, 1, 2))
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.close_pipes()
        async with asyncio.timeout(SAFETY_SECS):
            assert await first.wait() == -signal.SIGKILL


async def test_a_step_s_child_does_not_hold_the_server_s_listening_socket() -> None:
    """Under `mse serve` a child that held the listening socket could accept the server's
    connections, and keep its port bound after the server stopped."""
    with bind_socket("127.0.0.1", 0) as listening:
        child = ChildProcess.start([sys.executable, "-c", FD_REPORT], False, None, ENV)
        async with asyncio.timeout(SAFETY_SECS):
            held = open_in_child(await child.stdout.read())
            assert await child.wait() == 0
        assert f"socket:[{os.fstat(listening.fileno()).st_ino}]" not in held.values()


async def test_the_child_gets_the_signals_python_ignores_back_at_their_default() -> None:
    """Python ignores SIGPIPE and SIGXFSZ; a child must not inherit that (`cat` into a closed pipe
    would loop on EPIPE instead of dying)."""
    child = ChildProcess.start(["grep", "^SigIgn:", "/proc/self/status"], False, None, ENV)
    async with asyncio.timeout(SAFETY_SECS):
        line = await child.stdout.read()
        assert await child.wait() == 0
    ignored = int(line.split()[1], 16)
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):
        assert signal.getsignal(sig) == signal.SIG_IGN
        assert not ignored & (1 << (sig - 1)), sig


async def test_a_program_named_without_a_slash_is_found_on_the_child_s_own_path(
    engine: Engine, op: CapToken, tmp_path: Path
) -> None:
    tool = tmp_path / "mse-test-only-here"
    tool.write_text("#!/bin/sh\necho '{\"found\": true}'\n")
    tool.chmod(0o755)
    spawner = ProcessSpawner(tool.name, env={"PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"})
    outcome = await run_one(engine, op, spawner, TaskSpec("path", "x"))
    assert outcome.value == {"found": True}


@pytest.mark.parametrize("named", ["by-path", "bare"])
async def test_a_program_that_is_not_executable_fails_the_spawn_with_permission_denied(
    named: str, engine: Engine, op: CapToken, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tool = tmp_path / "mse-test-not-executable"
    tool.write_text('#!/bin/sh\necho "{}"\n')
    tool.chmod(0o644)
    if named == "bare":
        monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    program = str(tool) if named == "by-path" else tool.name
    step = await engine.start_task(op, TaskSpec("noexec", "x"))
    with pytest.raises(DispatchFailed, match=f"internal: spawn failed: {program}: .*Permission denied: '{program}'"):
        await engine.dispatch_attempt(op, step, ProcessSpawner(program))


async def test_a_missing_program_named_without_a_slash_fails_the_spawn(engine: Engine, op: CapToken) -> None:
    step = await engine.start_task(op, TaskSpec("missing", "x"))
    with pytest.raises(DispatchFailed, match=r"internal: spawn failed: mse-no-such-program: .*No such file"):
        await engine.dispatch_attempt(op, step, ProcessSpawner("mse-no-such-program"))


async def test_a_program_that_cannot_run_early_on_path_is_passed_over_for_one_that_can(
    engine: Engine, op: CapToken, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As `exec` in the shells and in `subprocess`: a file that is executable but in no format the
    system runs (here: neither a binary nor a script) does not hide a good one later on PATH."""
    bad, good = tmp_path / "bad", tmp_path / "good"
    for folder in (bad, good):
        folder.mkdir()
    (bad / "mse-test-tool").write_bytes(b"\x00\x01 not a program")
    (good / "mse-test-tool").write_text('#!/bin/sh\necho \'{"ran": "good"}\'\n')
    for folder in (bad, good):
        (folder / "mse-test-tool").chmod(0o755)
    monkeypatch.setenv("PATH", os.pathsep.join([str(bad), str(good), os.environ["PATH"]]))
    outcome = await run_one(engine, op, ProcessSpawner("mse-test-tool"), TaskSpec("path", "x"))
    assert outcome.value == {"ran": "good"}
