"""Sandboxed Lua runtimes (lupa, Lua 5.4) with budgets and real cancellation.

A `LuaSandbox` owns one `LuaRuntime` whose standard library is trimmed by `sandbox.lua` (no `os`,
`io`, `debug`, `dofile`, `loadfile`, binary chunks or `string.dump`; `require` sees preloaded
modules only) and whose Python attribute access is refused. An instruction hook polls a `_Guard`
every `HOOK_EVERY` instructions, so an `AbortSignal` fired from any thread (a cancel token, a step
timeout), the wall-time budget or the instruction budget stops even `while true do end` promptly.
`LuaPool` keeps a few warm sandboxes; each run gets a fresh environment table, and a sandbox whose
run was aborted or ran out of memory is dropped instead of reused.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal, TypeVar

from lupa import lua54

from ..jsontext import MAX_VALUE_BYTES
from .convert import LuaConversionError, json_to_lua, lua_to_json

log = logging.getLogger("mlua_swarm.lua")

HOOK_EVERY = 10_000
"""Instructions between two polls of the abort flag (about 50 µs of Lua)."""

AbortReason = Literal["cancelled", "timeout", "budget"]
WarningSink = Callable[[str, str, int | None], None]
"""Receives (code, message, line of the user's script) for each authoring warning."""
Bridge = Callable[..., Any]
"""A host function scripts call as `<namespace>.<name>(...)`: JSON arguments in, JSON out."""
ModuleFinder = Callable[[str], tuple[str | None, str]]
"""`require` of a module not preloaded asks this: (source, chunk name), or (None, why not)."""
T = TypeVar("T")

_BOOTSTRAP = resources.files(__package__).joinpath("sandbox.lua").read_text(encoding="utf-8")
_STRGUARD = resources.files(__package__).joinpath("strguard.lua").read_text(encoding="utf-8")
_LINE = re.compile(r":(\d+):")


@dataclass(frozen=True, slots=True)
class LuaLimits:
    """Per-run budgets; `None` means unlimited."""

    instructions: int | None = 1_000_000_000
    wall_secs: float | None = 60.0
    memory_bytes: int | None = 64 * 1024 * 1024


DEFAULT_LIMITS = LuaLimits()
"""The budgets a Lua worker gets unless its agent or kind says otherwise."""


class AbortSignal:
    """A flag any thread may fire; the running script stops at its next instruction hook."""

    __slots__ = ("reason",)

    def __init__(self) -> None:
        self.reason: AbortReason | None = None

    def fire(self, reason: AbortReason = "cancelled") -> None:
        if self.reason is None:
            self.reason = reason


class LuaScriptError(Exception):
    """The script raised, failed to compile, or returned something with no JSON form."""

    def __init__(self, message: str, line: int | None = None, value: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.value = value


class LuaAborted(Exception):
    """The host stopped the script: cancelled, out of wall time, or out of instruction budget."""

    def __init__(self, reason: AbortReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class LuaRun:
    """A finished run: the script's first return value as JSON, and what it cost."""

    value: Any
    instructions: int
    elapsed_secs: float


class _Guard:
    """What the instruction hook polls; reset for every run."""

    __slots__ = ("budget", "deadline", "polls", "reason", "signal")

    def __init__(self) -> None:
        self.signal: AbortSignal | None = None
        self.deadline: float | None = None
        self.budget: int | None = None
        self.polls = 0
        self.reason: AbortReason | None = None

    def begin(self, signal: AbortSignal, limits: LuaLimits) -> None:
        self.signal = signal
        self.deadline = None if limits.wall_secs is None else time.monotonic() + limits.wall_secs
        self.budget = None if limits.instructions is None else max(1, limits.instructions // HOOK_EVERY)
        self.polls = 0
        self.reason = None

    def end(self) -> None:
        self.signal = None

    def check(self) -> bool:
        """The instruction hook's poll: counts toward the instruction budget."""
        self.polls += 1
        return self.check_clock()

    def check_clock(self) -> bool:
        """The same answer without counting a poll: what a long C call asks between bounded pieces."""
        signal = self.signal
        if signal is not None and signal.reason is not None:
            self.reason = signal.reason
        elif self.budget is not None and self.polls > self.budget:
            self.reason = "budget"
        elif self.deadline is not None and time.monotonic() > self.deadline:
            self.reason = "timeout"
        return self.reason is not None


def _refuse_attribute(obj: Any, name: Any, is_setting: bool) -> Any:
    raise AttributeError("Python attributes are not reachable from the Lua sandbox")


def _lua_print(text: str) -> None:
    log.info("lua print: %s", text)


class LuaSandbox:
    """One sandboxed runtime; not thread-safe, use one per thread (see `LuaPool`)."""

    def __init__(self) -> None:
        # max_memory=0: lupa's counting allocator without a cap; each run sets its own cap.
        self.runtime = lua54.LuaRuntime(
            register_eval=False,
            register_builtins=False,
            unpack_returned_tuples=True,
            attribute_filter=_refuse_attribute,
            max_memory=0,
        )
        self._guard = _Guard()
        self.poisoned = False
        self._sb = self.runtime.execute(
            _BOOTSTRAP, self._guard.check, HOOK_EVERY, _lua_print, self._guard.check_clock, _STRGUARD
        )
        self.runtime.globals().python = None

    def run(
        self,
        source: str,
        chunkname: str,
        *,
        globals_: Mapping[str, Any] | None = None,
        modules: Mapping[str, str] | None = None,
        namespaces: Mapping[str, Mapping[str, Bridge]] | None = None,
        warn: WarningSink | None = None,
        signal: AbortSignal | None = None,
        limits: LuaLimits = DEFAULT_LIMITS,
        find_module: ModuleFinder | None = None,
        extras: Mapping[str, Any] | None = None,
        blocked: Mapping[str, str] | None = None,
    ) -> LuaRun:
        """Run a chunk; `chunkname` follows Lua's rules (`=name` shows as `name` in messages).

        `extras` are further globals, as Lua values of this runtime (see `stdlib`); reading a name
        in `blocked` raises its message (say there how to get that name); `find_module` answers a
        `require` of a module `modules` does not hold.
        """
        rt = self.runtime
        with self._session(signal or AbortSignal(), limits) as started:
            lua_globals = json_to_lua(rt, dict(globals_ or {}))
            lua_modules = rt.table_from(dict(modules or {}))
            lua_namespaces = rt.table()
            for ns, fns in (namespaces or {}).items():
                lua_namespaces[ns] = rt.table_from({name: self._bridge(f"{ns}.{name}", fn) for name, fn in fns.items()})
            try:
                status, value, line = self._sb.run(
                    source,
                    chunkname,
                    lua_globals,
                    lua_modules,
                    lua_namespaces,
                    warn or _drop_warning,
                    find_module,
                    rt.table_from(dict(extras or {})),
                    rt.table_from(dict(blocked or {})),
                )
            except UnicodeDecodeError as exc:
                raise LuaScriptError("the script returned a string that is not valid UTF-8") from exc
            return self._finish(status, value, line, started)

    def call_function(
        self,
        source: str,
        chunkname: str,
        args: list[Any],
        *,
        signal: AbortSignal | None = None,
        limits: LuaLimits = DEFAULT_LIMITS,
    ) -> LuaRun:
        """Evaluate `source` to a function (mlua `eval` rules) and call it with JSON `args`."""
        rt = self.runtime
        with self._session(signal or AbortSignal(), limits) as started:
            lua_args = json_to_lua(rt, args)
            try:
                status, value = self._sb.call_eval(source, chunkname, lua_args, len(args))
            except UnicodeDecodeError as exc:
                raise LuaScriptError("the script returned a string that is not valid UTF-8") from exc
            return self._finish(status, value, None, started)

    def stdlib(self) -> dict[str, Any]:
        """This runtime's own `os`, `io`, `dofile`, `loadfile`, `require` and `package`, for `extras`.

        A script given them can change the runtime for later scripts, so the caller must mark
        the sandbox `poisoned` afterwards.
        """
        return dict(self._sb.stdlib().items())

    def check_syntax(self, source: str, chunkname: str) -> LuaScriptError | None:
        """Compile `source` without running it; the syntax error, if any."""
        message = self._sb.check(source, chunkname)
        if message is None:
            return None
        match = _LINE.search(str(message))
        return LuaScriptError(str(message), int(match.group(1)) if match else None)

    @contextmanager
    def _session(self, signal: AbortSignal, limits: LuaLimits) -> Iterator[float]:
        if limits.memory_bytes is not None:
            self.runtime.set_max_memory(self.runtime.get_memory_used() + limits.memory_bytes)
        self._guard.begin(signal, limits)
        try:
            yield time.monotonic()
        except lua54.LuaMemoryError as exc:
            self.poisoned = True
            raise LuaScriptError(f"not enough memory ({_limit_text(limits)})") from exc
        except LuaScriptError as exc:
            if exc.message.endswith("not enough memory"):
                self.poisoned = True
                exc.message = f"not enough memory ({_limit_text(limits)})"
                exc.args = (exc.message,)
            raise
        finally:
            self._guard.end()
            if limits.memory_bytes is not None:
                self.runtime.set_max_memory(0)

    def _finish(self, status: str, value: Any, line: int | None, started: float) -> LuaRun:
        """Turn the bootstrap's (status, value, line) answer into a `LuaRun` or the matching error."""
        if status == "ok":
            try:
                result = self.to_json(value)
            except LuaConversionError as exc:
                raise LuaScriptError(f"the result cannot be converted to JSON: {exc}") from exc
            return LuaRun(result, self._guard.polls * HOOK_EVERY, time.monotonic() - started)
        if status == "aborted":
            self.poisoned = True
            reason = self._guard.reason or "cancelled"
            raise LuaAborted(reason, _abort_text(reason, self._guard.polls))
        if status == "syntax":
            text = str(value)
            match = _LINE.search(text)
            raise LuaScriptError(text, int(match.group(1)) if match else None)
        raise _script_error(value, line)

    def to_json(self, value: Any) -> Any:
        """`lua_to_json`, refused past `MAX_VALUE_BYTES` of JSON text before any conversion.

        The size is measured in Lua, under the run's budgets, counting each appearance of a shared
        table without walking it twice, so a result that expands enormously costs nothing to refuse.
        """
        if lua54.lua_type(value) == "table":
            status, _ = self._sb.json_size(value, MAX_VALUE_BYTES)
            if status == "too_big":
                raise LuaConversionError(f"$: the value is larger than {MAX_VALUE_BYTES >> 20} MiB as JSON")
            if status == "cycle":
                raise LuaConversionError("$: the table contains itself")
            if status == "aborted":
                reason = self._guard.reason or "cancelled"
                raise LuaAborted(reason, _abort_text(reason, self._guard.polls))
        return lua_to_json(value)

    def _bridge(self, name: str, fn: Bridge) -> Callable[..., tuple[bool, Any]]:
        rt = self.runtime

        def call(*args: Any) -> tuple[bool, Any]:
            try:
                return True, json_to_lua(rt, fn(*(self.to_json(arg) for arg in args)))
            except Exception as exc:
                return False, f"{name}: {type(exc).__name__}: {exc}"

        return call


def _drop_warning(code: str, message: str, line: int | None) -> None:
    return None


def _script_error(value: Any, line: int | None) -> LuaScriptError:
    if isinstance(value, str):
        return LuaScriptError(value, line)
    try:
        data = lua_to_json(value)
    except LuaConversionError:
        return LuaScriptError(str(value), line)
    return LuaScriptError(json.dumps(data, ensure_ascii=False), line, data)


def _limit_text(limits: LuaLimits) -> str:
    if limits.memory_bytes is None:
        return "no limit set"
    return f"limit {limits.memory_bytes / (1024 * 1024):g} MiB"


def _abort_text(reason: AbortReason, polls: int) -> str:
    if reason == "budget":
        return f"instruction budget exceeded (about {polls * HOOK_EVERY} instructions)"
    if reason == "timeout":
        return "wall-time budget exceeded"
    return "cancelled"


class LuaPool:
    """A few warm sandboxes shared across threads; each lease is exclusive to one thread."""

    def __init__(self, max_idle: int = 4) -> None:
        self._idle: list[LuaSandbox] = []
        self._lock = threading.Lock()
        self._max_idle = max_idle

    @contextmanager
    def lease(self) -> Iterator[LuaSandbox]:
        """A sandbox for one run; returned to the pool afterwards unless the run poisoned it."""
        with self._lock:
            sandbox = self._idle.pop() if self._idle else None
        if sandbox is None:
            sandbox = LuaSandbox()
        try:
            yield sandbox
        finally:
            if not sandbox.poisoned:
                with self._lock:
                    if len(self._idle) < self._max_idle:
                        self._idle.append(sandbox)


_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()
_default_pool: LuaPool | None = None


def lua_executor() -> ThreadPoolExecutor:
    """The threads Lua runs on, apart from the default executor so scripts never starve other work."""
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=max(8, os.cpu_count() or 1), thread_name_prefix="mse-lua")
        return _executor


def default_pool() -> LuaPool:
    """The process-wide pool of warm sandboxes used by Lua workers and Lua middleware."""
    global _default_pool
    with _executor_lock:
        if _default_pool is None:
            _default_pool = LuaPool()
        return _default_pool


async def run_in_lua_thread(pool: LuaPool, job: Callable[[LuaSandbox], T], signal: AbortSignal) -> T:
    """Run `job` on a leased sandbox in a Lua thread, keeping the event loop free.

    If the awaiting task is cancelled, `signal` fires and the script stops at its next hook; the
    task still waits for the thread to hand its sandbox back before it re-raises.
    """

    def work() -> T:
        if signal.reason is not None:
            raise LuaAborted(signal.reason, _abort_text(signal.reason, 0))
        with pool.lease() as sandbox:
            return job(sandbox)

    future = asyncio.get_running_loop().run_in_executor(lua_executor(), work)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        signal.fire("cancelled")
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait({future})
        if future.done() and not future.cancelled():
            future.exception()
        raise


__all__ = [
    "DEFAULT_LIMITS",
    "HOOK_EVERY",
    "AbortReason",
    "AbortSignal",
    "Bridge",
    "LuaAborted",
    "LuaLimits",
    "LuaPool",
    "LuaRun",
    "LuaSandbox",
    "LuaScriptError",
    "ModuleFinder",
    "WarningSink",
    "default_pool",
    "lua_executor",
    "run_in_lua_thread",
]
