"""Subprocess workers: the child protocol, templates, kill and timeouts (agent kind `subprocess`).

A child gets its prompt on stdin (then EOF) or as its last argument, and the `MSE_*` environment.
In plain mode its stdout is the value (JSON, else `{raw, stderr}`) and exit code 0 means ok; in a
streaming mode each `OutputEvent` it writes reaches the engine as it arrives, and
`ok = final.ok and exit_code == 0` unless the agent says `ok_from: "final"`.

Unlike upstream, the child runs in its own process group (and its own session when this process
has a controlling terminal, see `_new_session`): cancel and timeout send SIGTERM to the group, then
SIGKILL after the grace period, and whatever the child leaves running in its group when it exits is
killed. On Linux the engine is also a child subreaper, and descendants that left the
group (`setsid`, double fork) are found by the tag in their environment and killed with it (see
`worker.reaper`), so no grandchild outlives the attempt. stderr is always drained; its last 64 KiB
are reported in the attempt's stats.

The event loop serves the child's pipes and its exit itself (`ChildProcess`), without asyncio's
subprocess layer: on Python 3.11 that layer starts a thread per child to wait for its exit and
connects each pipe through a task and several loop turns, which cost more than the rest of a cold
step's own work.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..cancel import CancellationToken
from ..core.ctx import AgentContextView, Ctx
from ..errors import EngineError, VerdictRejected
from ..ids import StepId, WorkerId
from . import JoinHandleWorker, Worker, WorkerJoinHandler
from .adapter import SpawnerAdapter, WorkerResult, render_prompt, submit_result
from .errors import SpawnInternalError, WorkerCancelled, WorkerFailed
from .kinds import AgentKind, InvalidAgentSpec, LinkEnv
from .output import Artifact, Final, Inline, OutputEvent, Progress
from .reaper import become_subreaper, kill_tagged, sweep_soon
from .streams import (
    DEFAULT_MAX_FRAME,
    FrameTooLarge,
    Malformed,
    StreamMode,
    TailBuffer,
    read_bounded,
    read_events,
)
from .templates import (
    BoundTemplate,
    MissingPlaceholder,
    OutputDecl,
    RenderedCommand,
    bind_template,
    normalize_plain,
    parse_stream_mode,
    render_command,
    render_system_prompt,
)

if TYPE_CHECKING:
    from ..core.engine import Engine
    from ..tokens import CapToken

log = logging.getLogger(__name__)

OkFrom = Literal["exit_code", "final"]
PIPE_CLOSE_SECS = 5.0
"""How long the child's pipes may stay open after it exited and its group was killed; then they are
closed (a process that left the group, `setsid` say, can hold them) and the attempt ends with what was read."""
STDERR_IN_VALUE = 2000
"""How much of the stderr tail (in characters) a synthetic failing Final carries, for diagnosis."""
MALFORMED_REPORTS = 5
"""Malformed stream records reported one by one as Progress events; the rest are only counted."""


class ProcessWorker(JoinHandleWorker):
    """A running child process. `process` is for inspection only (its `pid` is also its group id);
    `await process.wait()` returns once the child is reaped and its pipes are closed."""

    __slots__ = ("process",)

    def __init__(self, handler: WorkerJoinHandler, process: ChildProcess) -> None:
        super().__init__(handler)
        self.process = process

    @property
    def pid(self) -> int:
        return self.process.pid


class ProcessSpawner(SpawnerAdapter):
    """Runs one child process per attempt (`program args…`, or a bound `SubprocessDef` template)."""

    worker_kind = "subprocess"

    def __init__(
        self,
        program: str,
        args: Sequence[str] = (),
        *,
        use_stdin: bool = True,
        stream_mode: StreamMode | str | None = None,
        ok_from: OkFrom = "exit_code",
        kill_grace_secs: float | None = None,
        max_frame_bytes: int = DEFAULT_MAX_FRAME,
        cwd: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        base_dir: Path | None = None,
    ) -> None:
        self.program = program
        self.args = tuple(args)
        self.use_stdin = use_stdin
        self.stream_mode = StreamMode(stream_mode) if stream_mode is not None else None
        self.ok_from: OkFrom = ok_from
        self.kill_grace_secs = kill_grace_secs
        self.max_frame_bytes = max_frame_bytes
        self.cwd = os.fspath(cwd) if cwd is not None else None
        self.env = dict(env or {})
        self.base_dir = base_dir
        self.template: BoundTemplate | None = None

    @classmethod
    def shell(cls, command: str, **options: Any) -> ProcessSpawner:
        """A child running `sh -c command`."""
        return cls("sh", ("-c", command), **options)

    @classmethod
    def from_template(cls, bound: BoundTemplate, *, base_dir: Path | None = None, **options: Any) -> ProcessSpawner:
        """A child described by a `SubprocessDef` template; relative cwds resolve against `base_dir`."""
        argv = bound.template.argv
        spawner = cls(argv[0], argv[1:], stream_mode=bound.template.stream_mode, base_dir=base_dir, **options)
        spawner.template = bound
        return spawner

    async def spawn(self, engine: Engine, ctx: Ctx, task_id: StepId, attempt: int, token: CapToken) -> Worker:
        try:
            directive = await engine.fetch_prompt(token, task_id)
        except EngineError as exc:
            raise SpawnInternalError(f"fetch_prompt: {exc}") from exc
        prompt = render_prompt(directive)
        cleanup: list[Path] = []
        try:
            if self.template is None:
                argv = [self.program, *self.args] if self.use_stdin else [self.program, *self.args, prompt]
                stdin, extra_env, cwd = (prompt if self.use_stdin else None), self.env, self.cwd
            else:
                command = self._render(self.template, ctx, directive, prompt, cleanup)
                argv, stdin, extra_env, cwd = command.argv, command.stdin, {**self.env, **command.env}, command.cwd
            if cwd is not None and self.base_dir is not None:
                cwd = os.fspath(self.base_dir / cwd)
            env = _child_env(_mse_env(ctx, task_id, attempt, token, engine.config.http_base_url), extra_env)
            become_subreaper()
            started = time.monotonic()
            try:
                child = ChildProcess.start(argv, stdin is not None, cwd, env)
            except (OSError, ValueError, subprocess.SubprocessError) as exc:
                raise SpawnInternalError(f"spawn failed: {argv[0]}: {exc}") from exc
        except BaseException:
            _unlink(cleanup)
            raise
        grace = self.kill_grace_secs if self.kill_grace_secs is not None else engine.config.cancel_grace_secs
        cancel = CancellationToken()
        killer = _GroupKiller(child.pid, grace, token.nonce)
        run = _ChildRun(self, engine, token, task_id, attempt, child, killer, cancel, cleanup, started)
        cancel.on_cancel(killer.terminate_soon)
        task = asyncio.create_task(run.drive(stdin.encode() if stdin is not None else None))
        task.add_done_callback(run.abandon)
        return ProcessWorker(WorkerJoinHandler(WorkerId.new(), cancel, task), child)

    def _render(
        self, bound: BoundTemplate, ctx: Ctx, directive: Any, prompt: str, cleanup: list[Path]
    ) -> RenderedCommand:
        """The template's argv, stdin, env and cwd for this attempt."""
        view = AgentContextView.from_ctx(ctx)
        try:
            system = render_system_prompt(bound.system_prompt, directive) if bound.system_prompt else ""
        except Exception as exc:
            raise SpawnInternalError(f"render system_prompt: {type(exc).__name__}: {exc}") from exc
        values: dict[str, str] = {
            "prompt": prompt,
            "system": system,
            "tools_csv": bound.tools_csv,
            "task_id": str(ctx.task_id),
            "attempt": str(ctx.attempt),
        }
        if bound.model is not None:
            values["model"] = bound.model
        work_dir = view.work_dir or view.project_root
        if work_dir:
            values["work_dir"] = str(work_dir)
        if system and "system_file" in bound.template.referenced():
            values["system_file"] = _write_system_file(system, ctx.task_id, ctx.attempt, cleanup)
        try:
            return render_command(bound, values)
        except MissingPlaceholder as exc:
            raise SpawnInternalError(f"template '{bound.template.name}': {exc}") from exc

    def __repr__(self) -> str:
        what = f"template={self.template.template.name!r}" if self.template else f"program={self.program!r}"
        return f"ProcessSpawner({what}, mode={self.stream_mode or 'plain'})"


def _exit_fields(returncode: int | None) -> dict[str, Any]:
    """`exit_code` (null when the child was killed by a signal), and `signal` when it was."""
    if returncode is not None and returncode < 0:
        return {"exit_code": None, "signal": -returncode}
    return {"exit_code": returncode}


def _mse_env(ctx: Ctx, task_id: StepId, attempt: int, token: CapToken, http: str | None = None) -> dict[str, str]:
    """The `MSE_*` variables a child uses to identify itself and call back into the engine (`MSE_HTTP`:
    the server's URL when the run is hosted by `mse serve`)."""
    env = {
        "MSE_TOKEN_AGENT_ID": token.agent_id,
        "MSE_TOKEN_NONCE": token.nonce,
        "MSE_TOKEN": token.encode(),
        "MSE_TASK_ID": str(task_id),
        "MSE_ATTEMPT": str(attempt),
        "MSE_CTX_AGENT": ctx.agent,
    }
    handle = ctx.meta.runtime.get("worker_handle")
    if handle:
        env["MSE_WORKER_HANDLE"] = str(handle)
    run_id = ctx.meta.runtime.get("run_id")
    if run_id:
        env["MSE_RUN_ID"] = str(run_id)
    if http:
        env["MSE_HTTP"] = http
    return env


_NOT_INHERITED = (b"MSE_ADMIN_TOKEN",)
"""mse's own credentials a child must not inherit: a step's child is trusted with its own attempt
(its `MSE_TOKEN`), not with the server's admin token that `mse server install` puts in the
server's environment. A Blueprint's `env` may still pass one on purpose."""


def _child_env(*layers: Mapping[str, str]) -> dict[bytes, bytes]:
    """This process's environment without `_NOT_INHERITED`, with `layers` on top (later ones win) and
    PYTHONPATH ending in this package's folder, as the bytes `exec` takes: the inherited variables are
    not decoded and encoded again on every spawn."""
    env = _environ_bytes()
    for name in _NOT_INHERITED:
        env.pop(name, None)
    for layer in layers:
        for key, value in layer.items():
            env[os.fsencode(key)] = os.fsencode(value)
    env[b"PYTHONPATH"] = _package_pythonpath(env.get(b"PYTHONPATH"))
    return env


def _environ_bytes() -> dict[bytes, bytes]:
    """A copy of this process's environment as bytes. On POSIX `os.environ` keeps it in a dict of
    bytes, copied here in one C call: going through the `os.environb` mapping costs a few Python
    calls per variable (tens of microseconds per spawn)."""
    data = getattr(os.environ, "_data", None)
    if os.name == "posix" and type(data) is dict:
        return dict(data)
    return dict(os.environb)


_PACKAGE_PARENT = str(Path(__file__).resolve().parents[2])


@functools.lru_cache(maxsize=8)
def _package_pythonpath(pythonpath: bytes | None) -> bytes:
    return os.fsencode(_with_package_path(None if pythonpath is None else os.fsdecode(pythonpath)))


def _with_package_path(pythonpath: str | None) -> str:
    """`PYTHONPATH` with this package's folder appended, so any Python child can import
    `mlua_swarm.child` (it needs only the standard library)."""
    parts = pythonpath.split(os.pathsep) if pythonpath else []
    if _PACKAGE_PARENT not in parts:
        parts.append(_PACKAGE_PARENT)
    return os.pathsep.join(parts)


def _write_system_file(system: str, task_id: StepId, attempt: int, cleanup: list[Path]) -> str:
    fd, name = tempfile.mkstemp(prefix=f"mse-system-{task_id}-{attempt}-", suffix=".md")
    path = Path(name)
    cleanup.append(path)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(system)
    return name


def _unlink(paths: list[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


_READ_CHUNK = 2**16
_STDOUT_LIMIT = 2**16
"""The stdout reader's buffer limit: reading pauses once twice this much is waiting to be parsed."""


class ChildProcess:
    """A child process and our ends of its pipes, served by the event loop itself.

    The pipes are non-blocking file descriptors watched by loop readers: stdout feeds `stdout` (a
    StreamReader, which pauses reading while its buffer is full), stderr goes straight into
    `stderr_tail` (never paused, so the child never blocks on it), and stdin is written as the child
    reads it, then closed. The exit is seen through a pidfd (Linux 5.3 and later; elsewhere a thread
    waits for it) and resolves `exited` as soon as the child is reaped: `wait()` also waits for the
    pipes to close, which a grandchild can hold open forever, so `exited` lets the worker notice the
    exit and kill the rest of the group first.
    """

    def __init__(
        self, pid: int, popen: subprocess.Popen[bytes] | None, stdin: int | None, stdout: int, stderr: int
    ) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._popen = popen
        self.pid = pid
        self.returncode: int | None = None
        self.exited: asyncio.Future[None] = loop.create_future()
        self.stderr_closed: asyncio.Future[None] = loop.create_future()
        self._closed: asyncio.Future[None] = loop.create_future()
        self.stderr_tail = TailBuffer()
        self.stdout = asyncio.StreamReader(limit=_STDOUT_LIMIT, loop=loop)
        self.stdout.set_transport(self)  # type: ignore[arg-type]  # it only calls pause/resume_reading
        self._stdin = stdin
        self._stdout: int | None = stdout
        self._stderr: int | None = stderr
        self._unsent = memoryview(b"")
        self._writing = False
        self._reading = True
        for fd in (stdin, stdout, stderr):
            if fd is not None:
                os.set_blocking(fd, False)
        loop.add_reader(stdout, self._on_stdout)
        loop.add_reader(stderr, self._on_stderr)
        self._watch_exit()

    @classmethod
    def start(cls, argv: Sequence[str], with_stdin: bool, cwd: str | None, env: Mapping[bytes, bytes]) -> ChildProcess:
        """Start `argv` leading a process group of its own (in a session of its own when this process
        has a controlling terminal), stdin a pipe when `with_stdin`, else /dev/null. Raises what
        `subprocess.Popen` raises when the program cannot be started."""
        ours: list[int] = []
        theirs: list[int] = []
        try:
            stdin: int | None = None
            child_stdin: int | None = None
            if with_stdin:
                child_stdin, stdin = os.pipe()
                ours.append(stdin)
                theirs.append(child_stdin)
            stdout, child_stdout = os.pipe()
            ours.append(stdout)
            theirs.append(child_stdout)
            stderr, child_stderr = os.pipe()
            ours.append(stderr)
            theirs.append(child_stderr)
            pid, popen = _spawn(argv, (child_stdin, child_stdout, child_stderr), cwd, env, _new_session())
        except BaseException:
            for fd in ours:
                os.close(fd)
            raise
        finally:
            for fd in theirs:
                os.close(fd)
        return cls(pid, popen, stdin, stdout, stderr)

    async def wait(self) -> int:
        """The exit code (minus the signal that killed it), once the child is reaped and our ends of
        its pipes are closed."""
        await asyncio.shield(self.exited)
        await asyncio.shield(self._closed)
        assert self.returncode is not None
        return self.returncode

    def write_stdin(self, data: bytes) -> None:
        """Hand `data` to the stdin pipe, written as the child reads it and then closed. A child that
        exits or closes its stdin without reading it all is not an error: the rest is dropped."""
        self._unsent = memoryview(data)
        self._on_stdin_writable()

    def close_pipes(self) -> None:
        """Close our ends of the pipes now; unread output is dropped, and stdout reads end there."""
        self._close_stdin()
        self._close_stdout()
        self._close_stderr()

    # the StreamReader's transport side: it pauses reading while its buffer is full

    def pause_reading(self) -> None:
        if self._reading and self._stdout is not None:
            self._reading = False
            self._loop.remove_reader(self._stdout)

    def resume_reading(self) -> None:
        if not self._reading and self._stdout is not None:
            self._reading = True
            self._loop.add_reader(self._stdout, self._on_stdout)

    def _on_stdout(self) -> None:
        assert self._stdout is not None
        data = _read_ready(self._stdout)
        if data:
            self.stdout.feed_data(data)
        elif data is not None:
            self._close_stdout()

    def _on_stderr(self) -> None:
        assert self._stderr is not None
        data = _read_ready(self._stderr)
        if data:
            self.stderr_tail.write(data)
        elif data is not None:
            self._close_stderr()

    def _on_stdin_writable(self) -> None:
        fd = self._stdin
        if fd is None:
            return
        try:
            written = os.write(fd, self._unsent) if self._unsent else 0
        except BlockingIOError:
            written = 0
        except OSError:  # EPIPE and kin: the child will not read the rest
            self._close_stdin()
            return
        self._unsent = self._unsent[written:]
        if not self._unsent:
            self._close_stdin()
        elif not self._writing:
            self._writing = True
            self._loop.add_writer(fd, self._on_stdin_writable)

    def _close_stdin(self) -> None:
        fd, self._stdin = self._stdin, None
        if fd is not None:
            if self._writing:
                self._loop.remove_writer(fd)
            os.close(fd)
            self._unsent = memoryview(b"")
            self._check_closed()

    def _close_stdout(self) -> None:
        fd, self._stdout = self._stdout, None
        if fd is not None:
            if self._reading:
                self._loop.remove_reader(fd)
            os.close(fd)
            self.stdout.feed_eof()
            self._check_closed()

    def _close_stderr(self) -> None:
        fd, self._stderr = self._stderr, None
        if fd is not None:
            self._loop.remove_reader(fd)
            os.close(fd)
            if not self.stderr_closed.done():
                self.stderr_closed.set_result(None)
            self._check_closed()

    def _check_closed(self) -> None:
        if self._stdin is None and self._stdout is None and self._stderr is None and not self._closed.done():
            self._closed.set_result(None)

    def _watch_exit(self) -> None:
        try:
            pidfd = os.pidfd_open(self.pid)
        except (AttributeError, OSError):  # not Linux, or a kernel before 5.3
            threading.Thread(target=self._wait_blocking, name=f"mse-wait-{self.pid}", daemon=True).start()
        else:
            self._loop.add_reader(pidfd, self._on_exit_ready, pidfd)

    def _on_exit_ready(self, pidfd: int) -> None:
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:  # reaped by someone else: its exit status is lost
            pid, status = self.pid, None
        if pid == 0:
            return
        self._loop.remove_reader(pidfd)
        os.close(pidfd)
        self._reaped(status)

    def _wait_blocking(self) -> None:
        try:
            _, status = os.waitpid(self.pid, 0)
        except ChildProcessError:
            status = None
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits for the exit any more
            self._loop.call_soon_threadsafe(self._reaped, status)

    def _reaped(self, status: int | None) -> None:
        code = 255 if status is None else os.waitstatus_to_exitcode(status)
        self.returncode = code
        if self._popen is not None:
            # Popen must not count the child as still running (it would warn, and wait for it again)
            self._popen.returncode = code
        if not self.exited.done():
            self.exited.set_result(None)


_RESTORED_SIGNALS = tuple(getattr(signal, name) for name in ("SIGPIPE", "SIGXFZ", "SIGXFSZ") if hasattr(signal, name))
"""The signals Python ignores and `Popen` puts back to their default in the child: so does `_spawn`."""
_FAST_SPAWN = sys.platform == "linux"
_CLOSE_INHERITED = [(os.POSIX_SPAWN_CLOSEFROM, 3)] if hasattr(os, "POSIX_SPAWN_CLOSEFROM") else []
"""Python 3.13 and later: the child closes every descriptor above stderr, as `Popen` has it do."""


def _spawn(
    argv: Sequence[str], stdio: tuple[int | None, int, int], cwd: str | None, env: Mapping[bytes, bytes], session: bool
) -> tuple[int, subprocess.Popen[bytes] | None]:
    """Start the child on `stdio` (stdin None: /dev/null); its pid, and its `Popen` when one started it.

    On Linux `os.posix_spawnp` starts it (a `vfork` and an `exec` in C: `Popen` spends more Python
    work in the parent than the rest of a cold step's own spawn). `Popen` is kept for what posix_spawn
    cannot do the same way: a working directory (`os.posix_spawn` has no action for it), and a
    program named without a slash when the child's PATH is not this process's (posix_spawnp searches
    ours). A bare name that fails to start is tried again with `Popen`, which goes on down PATH past
    a file the system cannot run (posix_spawnp stops there) and reports a missing or non-executable
    program as it always did. Before Python 3.13 the child keeps the descriptors this process marked
    inheritable (Python creates none: its files, pipes and sockets are closed on `exec`), where
    `Popen` closed every descriptor above stderr."""
    name = argv[0]
    bare = os.sep not in name
    if _FAST_SPAWN and cwd is None and not (bare and env.get(b"PATH") != os.environb.get(b"PATH")):
        stdin, stdout, stderr = stdio
        actions: list[tuple[Any, ...]] = [
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDWR, 0) if stdin is None else (os.POSIX_SPAWN_DUP2, stdin, 0),
            (os.POSIX_SPAWN_DUP2, stdout, 1),
            (os.POSIX_SPAWN_DUP2, stderr, 2),
            *_CLOSE_INHERITED,
        ]
        try:
            pid = os.posix_spawnp(
                name,
                list(argv),
                env,
                file_actions=actions,
                setsigdef=_RESTORED_SIGNALS,
                **({"setsid": True} if session else {"setpgroup": 0}),
            )
        except OSError:
            if not bare:
                raise
        else:
            return pid, None
    popen = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL if stdio[0] is None else stdio[0],
        stdout=stdio[1],
        stderr=stdio[2],
        cwd=cwd,
        env=env,
        start_new_session=session,
        process_group=None if session else 0,
    )
    return popen.pid, popen


@functools.cache
def _new_session() -> bool:
    """Whether a child gets a session of its own, not only a process group: when this process has a
    controlling terminal, which a child in another session cannot reach (it cannot stop on reading or
    writing the terminal, nor get its signals). Without a terminal both are the same to the child, and
    a group is cheaper: on Linux a new session is also a new scheduling autogroup, which the child
    waits to be given a CPU in, milliseconds on a loaded machine, while the spawn waits for its `exec`."""
    try:
        fd = os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY)
    except OSError:
        return False
    os.close(fd)
    return True


def _read_ready(fd: int) -> bytes | None:
    """What a readable pipe holds: b"" at its end (an error counts as the end), None when nothing
    is there after all."""
    try:
        return os.read(fd, _READ_CHUNK)
    except BlockingIOError:
        return None
    except OSError:
        return b""


class _GroupKiller:
    """Signals the child's process group: SIGTERM now, SIGKILL once the grace period is over.

    After `close()` (the attempt is over) it never signals again, since the group id may be reused.
    """

    __slots__ = ("_timer", "closed", "grace", "pgid", "tag", "terminated")

    def __init__(self, pgid: int, grace: float, tag: str) -> None:
        self.pgid = pgid
        self.grace = grace
        self.tag = tag
        self.terminated = False
        self.closed = False
        self._timer: asyncio.TimerHandle | None = None

    def terminate_soon(self) -> None:
        if self.terminated or self.closed:
            return
        self.terminated = True
        self.signal(signal.SIGTERM)
        self._timer = asyncio.get_running_loop().call_later(self.grace, self.signal, signal.SIGKILL)

    def signal(self, sig: signal.Signals) -> None:
        if self.closed:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pgid, sig)
        if sig == signal.SIGKILL:
            kill_tagged(self.tag, spare=self.pgid)

    def child_exited(self) -> None:
        """SIGKILL what the child left in its group; its tagged descendants too, by the background sweep
        unless the attempt is being killed (then at once, as `signal` does)."""
        if self.terminated:
            self.signal(signal.SIGKILL)
        elif not self.closed:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pgid, signal.SIGKILL)
            sweep_soon(self.tag, spare=self.pgid)

    def close(self) -> None:
        if not self.closed:
            if self.terminated:
                kill_tagged(self.tag, spare=self.pgid)
            else:
                sweep_soon(self.tag, spare=self.pgid)
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()


class _ChildRun:
    """One attempt's child: feeds stdin, reads stdout, and reports the outcome.

    The drive task is the only task: stdin is handed to the child's pipe (written as the child reads
    it, then closed), stderr lands in the child's tail, and stdout is read inline.
    """

    def __init__(
        self,
        spawner: ProcessSpawner,
        engine: Engine,
        token: CapToken,
        task_id: StepId,
        attempt: int,
        child: ChildProcess,
        killer: _GroupKiller,
        cancel: CancellationToken,
        cleanup: list[Path],
        started: float,
    ) -> None:
        self.engine = engine
        self.token = token
        self.task_id = task_id
        self.attempt = attempt
        self.proc = child
        self.mode = spawner.stream_mode
        self.ok_from = spawner.ok_from
        self.max_frame = spawner.max_frame_bytes
        self.output: OutputDecl | None = spawner.template.template.output if spawner.template else None
        self.killer = killer
        self.cancel = cancel
        self.cleanup = cleanup
        self.stderr = child.stderr_tail
        self.started = started
        self.elapsed_ms = 0.0
        self.events = 0
        self.malformed: list[Malformed] = []
        self.malformed_count = 0
        self.last_final: Final | None = None
        self.rejected: VerdictRejected | None = None
        self.pipes_held = False
        self._pipe_timer: asyncio.TimerHandle | None = None
        child.exited.add_done_callback(self._on_exit)

    def _on_exit(self, _: asyncio.Future[None]) -> None:
        """The child is gone: kill what it left in its group, and bound how long its pipes stay open."""
        self.elapsed_ms = (time.monotonic() - self.started) * 1000
        self.killer.child_exited()
        if not self.killer.closed:
            self._pipe_timer = asyncio.get_running_loop().call_later(PIPE_CLOSE_SECS, self._pipes_stuck)

    def _pipes_stuck(self) -> None:
        """A process outside the group still holds the pipes: stop reading so the attempt can end."""
        self.pipes_held = True
        log.warning(
            "step %s attempt %s: the child exited but a process outside its group kept its output open for %ss",
            self.task_id,
            self.attempt,
            PIPE_CLOSE_SECS,
        )
        self.proc.close_pipes()

    async def drive(self, stdin: bytes | None) -> None:
        """Run the child to the end; the attempt's Final (or error) reflects how it ended."""
        if stdin is not None:
            self.proc.write_stdin(stdin)
        try:
            body = await self._read_stdout()
            # Shielded: cancelling this task must not cancel the child's futures themselves.
            await asyncio.shield(self.proc.exited)
            await asyncio.shield(self.proc.stderr_closed)
        except FrameTooLarge as exc:
            raise WorkerFailed(str(exc)) from None
        finally:
            await self._stop()
        if self.cancel.is_cancelled():
            raise WorkerCancelled()
        if self.mode is None:
            assert body is not None
            await self._finish_plain(body)
        else:
            await self._finish_stream()

    def abandon(self, task: asyncio.Task[None]) -> None:
        """Done-callback of the drive task: if it never ran its cleanup (cancelled before it started), kill now."""
        if not self.killer.closed:
            self.killer.signal(signal.SIGKILL)
            self._release()

    async def _stop(self) -> None:
        """Whatever happened, the group is gone, the pipes are closed and the stats are recorded."""
        try:
            if not self.proc.exited.done():
                self.killer.terminate_soon()
                try:
                    await asyncio.shield(self.proc.exited)
                except asyncio.CancelledError:
                    self.killer.signal(signal.SIGKILL)
                    raise
        finally:
            self._release()
        await self.proc.wait()

    def _release(self) -> None:
        """Stop signalling, close our ends of the pipes (unread output is dropped), record the stats."""
        self.killer.close()
        if self._pipe_timer is not None:
            self._pipe_timer.cancel()
        self.proc.close_pipes()
        _unlink(self.cleanup)
        self._record_stats()

    async def _read_stdout(self) -> bytes | None:
        """Plain mode: the whole (bounded) body. Streaming: submit events as they arrive."""
        stdout = self.proc.stdout
        try:
            if self.mode is None:
                return await read_bounded(stdout, self.max_frame)
            async for item in read_events(stdout, self.mode, self.max_frame):
                if isinstance(item, Malformed):
                    await self._malformed(item)
                else:
                    await self._submit(item)
            return None
        except BaseException:
            self.killer.terminate_soon()
            raise

    async def _submit(self, event: OutputEvent) -> None:
        self.events += 1
        try:
            await self.engine.submit_output(
                self.token, self.task_id, self.attempt, event, stage=type(event) is Artifact
            )
        except VerdictRejected as exc:
            self.rejected = exc
            return
        except EngineError as exc:
            log.debug("step %s attempt %s: event not recorded: %s", self.task_id, self.attempt, exc)
            return
        if type(event) is Final:
            self.last_final = event
            self.rejected = None

    async def _malformed(self, item: Malformed) -> None:
        self.malformed_count += 1
        if len(self.malformed) < MALFORMED_REPORTS:
            self.malformed.append(item)
            with contextlib.suppress(EngineError):
                note = f"{self.mode} {item.describe()}"
                await self.engine.submit_output(
                    self.token, self.task_id, self.attempt, Progress("malformed_output", note)
                )

    def _submitted_over_http(self) -> bool:
        """The child already completed its attempt through the server's worker routes (`MSE_HTTP`)."""
        return any(type(event) is Final for event in self.engine.output_tail(self.task_id, self.attempt))

    async def _finish_plain(self, body: bytes) -> None:
        if not body.strip() and self._submitted_over_http():
            return
        value, ok, extra = normalize_plain(body, self.stderr.text(), self.proc.returncode == 0, self.output)
        if extra:
            self.engine.record_worker_stats(self.task_id, self.attempt, extra)
        submit_result(self.engine, self.token, self.task_id, self.attempt, WorkerResult(value, ok), "subprocess")

    async def _finish_stream(self) -> None:
        if self.rejected is not None:
            raise WorkerFailed(f"Final rejected before output_tail: {self.rejected}")
        code = self.proc.returncode
        final = self.last_final
        if final is None and self._submitted_over_http():
            return
        if final is None:
            value: dict[str, Any] = {
                "raw": "",
                "note": "streaming mode: no Final event received",
                "exit_success": code == 0,
                **_exit_fields(code),
            }
            if self.malformed_count:
                value["malformed_records"] = self.malformed_count
                value["first_malformed"] = self.malformed[0].describe()
            if self.stderr.total:
                value["stderr"] = self.stderr.text()[-STDERR_IN_VALUE:]
            await self._override(Final(Inline(value), ok=False))
        elif final.ok and code != 0 and self.ok_from == "exit_code":
            reason = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
            value = {
                "error": f"the child's final event said ok but it ended with {reason}",
                **_exit_fields(code),
                "final": final.content.as_value(),
            }
            await self._override(Final(Inline(value), ok=False))

    async def _override(self, final: Final) -> None:
        try:
            await self.engine.submit_output(self.token, self.task_id, self.attempt, final)
        except EngineError as exc:
            log.warning("step %s attempt %s: Final not recorded: %s", self.task_id, self.attempt, exc)

    def _record_stats(self) -> None:
        exit_fields = _exit_fields(self.proc.returncode)
        stats: dict[str, Any] = {
            "worker_kind": "subprocess",
            "pid": self.proc.pid,
            **exit_fields,
            "stream_mode": self.mode.value if self.mode else "plain",
            "stderr_tail": self.stderr.text(),
            "stderr_bytes": self.stderr.total,
            "elapsed_ms": round(self.elapsed_ms or (time.monotonic() - self.started) * 1000, 3),
            "adapter_data": {"exit_code": exit_fields["exit_code"]},
        }
        if self.pipes_held:
            stats["output_held_open"] = True
        if self.mode is not None:
            stats["events"] = self.events
            stats["malformed_records"] = self.malformed_count
            if self.malformed:
                stats["malformed"] = [m.describe() for m in self.malformed]
        self.engine.record_worker_stats(self.task_id, self.attempt, stats)


# ── the `subprocess` agent kind ─────────────────────────────────────────────

_SPEC_KEYS = frozenset(
    {"program", "args", "use_stdin", "stream_mode", "ok_from", "kill_grace_secs", "max_frame_bytes", "cwd", "env"}
)
_TEMPLATE_SPEC_KEYS = frozenset({"ok_from", "kill_grace_secs", "max_frame_bytes"})


class SubprocessKind(AgentKind):
    """`spec: {program, args, use_stdin, stream_mode, …}` or `runner: {backend: subprocess, template}`."""

    name = "subprocess"

    def build(self, agent: Mapping[str, Any], env: LinkEnv) -> SpawnerAdapter:
        name = agent.get("name")
        spec = agent.get("spec") or {}
        if not isinstance(spec, Mapping):
            raise InvalidAgentSpec(f"agent '{name}' of kind subprocess: spec must be an object", None)
        runner = _resolve_runner(agent, env.blueprint)
        if runner is not None and runner.get("backend") == "subprocess":
            _check_keys(spec, _TEMPLATE_SPEC_KEYS, f"agent '{name}' (runs template '{runner.get('template')}')")
            profile = agent.get("profile") or {}
            if not isinstance(profile, Mapping):
                raise InvalidAgentSpec(f"agent '{name}': profile must be an object", None)
            bound = bind_template(runner, env.blueprint, profile)
            template = bound.template
            _check_passable(template.argv, template.env, bound.cwd, f"agent '{name}' (template '{template.name}')")
            return ProcessSpawner.from_template(bound, base_dir=env.base_dir, **_options(spec, name))
        _check_keys(spec, _SPEC_KEYS, f"agent '{name}' of kind subprocess")
        program = spec.get("program")
        if not isinstance(program, str) or not program:
            raise InvalidAgentSpec(
                f"agent '{name}' of kind subprocess needs spec.program",
                'add "spec": {"program": "python3", "args": ["worker.py"]}, or a runner with a subprocess template',
            )
        args = spec.get("args") or []
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise InvalidAgentSpec(f"agent '{name}': spec.args must be a list of strings", None)
        use_stdin = spec.get("use_stdin", True)
        if not isinstance(use_stdin, bool):
            raise InvalidAgentSpec(f"agent '{name}': spec.use_stdin must be true or false", None)
        extra_env = spec.get("env") or {}
        if not isinstance(extra_env, Mapping) or not all(isinstance(v, str) for v in extra_env.values()):
            raise InvalidAgentSpec(f"agent '{name}': spec.env must map names to strings", None)
        cwd = spec.get("cwd")
        if cwd is not None and not isinstance(cwd, str):
            raise InvalidAgentSpec(f"agent '{name}': spec.cwd must be a string (relative to the Blueprint)", None)
        _check_passable([program, *args], extra_env, cwd, f"agent '{name}'")
        return ProcessSpawner(
            program,
            args,
            use_stdin=use_stdin,
            stream_mode=parse_stream_mode(spec.get("stream_mode"), f"agent '{name}'"),
            cwd=cwd,
            env=extra_env,
            base_dir=env.base_dir,
            **_options(spec, name),
        )


def _options(spec: Mapping[str, Any], name: Any) -> dict[str, Any]:
    """The options shared by both modes: `ok_from`, `kill_grace_secs`, `max_frame_bytes`."""
    options: dict[str, Any] = {}
    ok_from = spec.get("ok_from")
    if ok_from is not None:
        if ok_from not in ("exit_code", "final"):
            raise InvalidAgentSpec(
                f'agent \'{name}\': spec.ok_from must be "exit_code" or "final", got {ok_from!r}',
                '"final" lets a streaming child\'s final event decide alone, whatever its exit code',
            )
        options["ok_from"] = ok_from
    grace = spec.get("kill_grace_secs")
    if grace is not None:
        if isinstance(grace, bool) or not isinstance(grace, int | float) or grace < 0:
            raise InvalidAgentSpec(f"agent '{name}': spec.kill_grace_secs must be a number >= 0", None)
        options["kill_grace_secs"] = float(grace)
    limit = spec.get("max_frame_bytes")
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
            raise InvalidAgentSpec(f"agent '{name}': spec.max_frame_bytes must be a positive integer", None)
        options["max_frame_bytes"] = limit
    return options


def _check_passable(argv: Sequence[str], env: Mapping[str, str], cwd: str | None, where: str) -> None:
    """Refuse what no operating system passes to a child, so the Blueprint fails when it compiles
    rather than at its first attempt: a NUL character in the command line, the working directory or
    the environment, and an environment name that is empty or holds `=`."""
    for index, arg in enumerate(argv):
        if "\0" in arg:
            what = "the program" if index == 0 else f"argument {index}"
            raise InvalidAgentSpec(
                f"{where}: {what} {arg!r} holds a NUL character, which a command line cannot carry",
                "remove it; pass binary data on the child's stdin instead",
            )
    for key, value in env.items():
        if not isinstance(key, str) or not key or "=" in key or "\0" in key:
            raise InvalidAgentSpec(
                f"{where}: environment name {key!r} cannot be passed to a child",
                "an environment variable's name must be non-empty, without '=' or a NUL character",
            )
        if "\0" in value:
            raise InvalidAgentSpec(
                f"{where}: the value of environment variable {key!r} holds a NUL character",
                "remove it; an environment value ends at the first NUL",
            )
    if cwd is not None and "\0" in cwd:
        raise InvalidAgentSpec(f"{where}: cwd {cwd!r} holds a NUL character", "remove it from the path")


def _check_keys(spec: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise InvalidAgentSpec(
            f"{where}: unknown spec key(s) {', '.join(unknown)}", f"allowed: {', '.join(sorted(allowed))}"
        )


def _resolve_runner(agent: Mapping[str, Any], blueprint: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The agent's Runner: inline `runner`, else `runner_ref`, else legacy binding, else `default_runner`."""
    runner = agent.get("runner")
    if runner is not None:
        if not isinstance(runner, Mapping):
            raise InvalidAgentSpec(f"agent '{agent.get('name')}': runner must be an object", None)
        return runner
    ref = agent.get("runner_ref")
    profile = agent.get("profile")
    if ref is None and isinstance(profile, Mapping) and profile.get("worker_binding") is not None:
        return None
    ref = ref if ref is not None else blueprint.get("default_runner")
    if ref is None:
        return None
    for entry in blueprint.get("runners") or []:
        if isinstance(entry, Mapping) and entry.get("name") == ref and isinstance(entry.get("runner"), Mapping):
            found: Mapping[str, Any] = entry["runner"]
            return found
    raise InvalidAgentSpec(
        f"agent '{agent.get('name')}': runner '{ref}' is not declared in the Blueprint's runners",
        f'add {{"name": "{ref}", "runner": {{"backend": "subprocess", "template": ...}}}} to "runners"',
    )


__all__ = ["PIPE_CLOSE_SECS", "ChildProcess", "ProcessSpawner", "ProcessWorker", "StreamMode", "SubprocessKind"]
