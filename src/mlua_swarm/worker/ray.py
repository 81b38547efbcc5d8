"""Ray agents (kind `ray`): the agent's Python function runs as a task on a Ray cluster.

`spec.callable` names a function as a `python` agent does (`"pkg.mod:attr"`); each attempt calls it
as one Ray task, with the `WorkerInvocation` a `python` agent gets (its token is the attempt's own),
and what it returns becomes the step's value through the same `submit_result`. The function is
imported on the Ray worker, by name, with the Blueprint's folder on the worker's `sys.path`.

`ray` is an optional dependency (`mlua-swarm[ray]`), imported only when a ray agent's attempt
starts: building (compiling, linting) a Blueprint never imports it. The process connects to Ray once,
on first use (`ray.init`), from a thread that lives as long as the process: a local instance that
`ray.init` starts is tied to the thread that started it, and must not die with a short-lived one.

Cancelling an attempt (cancel, timeout, a fanout's loser) cancels its task: first gracefully
(`ray.cancel(force=False)`, a `KeyboardInterrupt` in the task), then, if the task has not ended after
the grace period, by killing its worker process (`force=True`); child tasks it started are cancelled
with it. See docs/ray.md.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib.util
import inspect
import logging
import os
import threading
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from ..cancel import CancellationToken
from ..core.ctx import AgentContextView
from ..errors import EngineError
from ..ids import StepId
from ..tokens import CapToken
from . import JoinHandleWorker, Worker, WorkerJoinHandler
from .adapter import SpawnerAdapter, WorkerInvocation, submit_result
from .errors import SpawnInternalError, WorkerCancelled, WorkerError, WorkerFailed
from .kinds import AgentKind, InvalidAgentSpec, LinkEnv
from .pyfn import import_callable

if TYPE_CHECKING:
    from ..core.ctx import Ctx
    from ..core.engine import Engine

log = logging.getLogger(__name__)

EXTRA_HINT = "pip install 'mlua-swarm[ray]'"
DEFAULT_CONNECT_TIMEOUT_SECS = 60.0
"""How long an attempt waits for this process's connection to Ray before it fails."""
FORCED_END_SECS = 10.0
"""After a forced cancel, how long an attempt waits for Ray to report the task's end before it ends anyway."""
SPEC_KEYS = frozenset(
    {
        "callable",
        "address",
        "num_cpus",
        "num_gpus",
        "memory",
        "resources",
        "runtime_env",
        "connect_timeout_secs",
        "kill_grace_secs",
    }
)
TRACEBACK_FRAMES = 3
"""How many of a remote exception's innermost frames its attempt's error names."""


# ── the kind: validates the spec, never imports ray ──────────────────────────────────────────────


class RayKind(AgentKind):
    """`spec: {callable, address?, num_cpus?, num_gpus?, memory?, resources?, runtime_env?, …}`."""

    name = "ray"

    def unavailable_reason(self) -> str | None:
        if importlib.util.find_spec("ray") is None:
            return f"agent kind 'ray' needs the ray package: {EXTRA_HINT}"
        return None

    def build(self, agent: Mapping[str, Any], env: LinkEnv) -> RaySpawner:
        name = str(agent.get("name"))
        where = f"agent '{name}' of kind ray"
        spec = agent.get("spec")
        if not isinstance(spec, Mapping):
            raise InvalidAgentSpec(
                f"{where} needs a spec object", 'add "spec": {"callable": "package.module:function"}'
            )
        unknown = sorted(set(spec) - SPEC_KEYS)
        if unknown:
            raise InvalidAgentSpec(
                f"{where}: unknown spec key(s) {', '.join(unknown)}", f"allowed: {', '.join(sorted(SPEC_KEYS))}"
            )
        runtime_env = _runtime_env(spec.get("runtime_env"), where, env.base_dir)
        target = _callable(spec.get("callable"), where, env.base_dir, runtime_env is not None)
        address = _address(spec.get("address"), where)
        _same_address(name, address, env.blueprint)
        options: dict[str, Any] = {"max_retries": 0}
        for key in ("num_cpus", "num_gpus"):
            if key in spec:
                options[key] = _amount(spec[key], f"{where}: spec.{key}")
        if "memory" in spec:
            memory = spec["memory"]
            if isinstance(memory, bool) or not isinstance(memory, int) or memory <= 0:
                raise InvalidAgentSpec(
                    f"{where}: spec.memory must be a positive number of bytes",
                    "a whole number of bytes, e.g. 2000000000 for 2 GB",
                )
            options["memory"] = memory
        if "resources" in spec:
            options["resources"] = _resources(spec["resources"], where)
        if runtime_env is not None:
            options["runtime_env"] = runtime_env
        connect = spec.get("connect_timeout_secs", DEFAULT_CONNECT_TIMEOUT_SECS)
        if isinstance(connect, bool) or not isinstance(connect, int | float) or connect <= 0:
            raise InvalidAgentSpec(f"{where}: spec.connect_timeout_secs must be a number > 0", None)
        grace = spec.get("kill_grace_secs")
        if grace is not None and (isinstance(grace, bool) or not isinstance(grace, int | float) or grace < 0):
            raise InvalidAgentSpec(f"{where}: spec.kill_grace_secs must be a number >= 0", None)
        return RaySpawner(
            target,
            base_dir=env.base_dir,
            address=address,
            options=options,
            connect_timeout_secs=float(connect),
            kill_grace_secs=None if grace is None else float(grace),
        )


def _callable(target: Any, where: str, base_dir: Path, has_runtime_env: bool) -> str:
    """`spec.callable`, checked here when it imports here.

    The function runs on the cluster, whose environment may differ: with a `runtime_env` (code or
    packages shipped to the workers), a module that does not import here is left to the workers.
    """
    if not isinstance(target, str) or not target:
        raise InvalidAgentSpec(f"{where} needs spec.callable", 'add "spec": {"callable": "package.module:function"}')
    module, sep, attr = target.partition(":")
    if not sep or not module or not attr:
        raise InvalidAgentSpec(f"{where}: spec.callable must be 'module:attr', got {target!r}", None)
    try:
        import_callable(target, base_dir)
    except ImportError as exc:
        if not has_runtime_env:
            raise InvalidAgentSpec(
                f"cannot import {target!r}: {exc}",
                "check the module is importable from the Blueprint's folder; if it (or what it imports) exists "
                "only on the cluster, ship it with spec.runtime_env (working_dir, py_modules, pip)",
            ) from exc
    except (AttributeError, ValueError) as exc:
        raise InvalidAgentSpec(f"cannot import {target!r}: {exc}", "check the name after ':' exists") from exc
    return target


def _address(address: Any, where: str) -> str | None:
    if address is None:
        return None
    if not isinstance(address, str) or not address.strip():
        raise InvalidAgentSpec(
            f"{where}: spec.address must be a non-empty string",
            '"auto" (a cluster running on this machine), "ray://HOST:10001" (Ray Client), "HOST:6379" (its GCS); '
            "omit it to use RAY_ADDRESS or start a local instance",
        )
    return address


def _same_address(name: str, address: str | None, blueprint: Mapping[str, Any]) -> None:
    """Ray allows one connection per process: every ray agent of a Blueprint names the same address."""
    for other in blueprint.get("agents") or ():
        if not isinstance(other, Mapping) or other.get("kind") != "ray" or other.get("name") == name:
            continue
        spec = other.get("spec")
        theirs = spec.get("address") if isinstance(spec, Mapping) else None
        if theirs != address:
            raise InvalidAgentSpec(
                f"agents '{name}' and '{other.get('name')}' name different Ray addresses "
                f"({_where(address)} and {_where(theirs)})",
                "a process connects to one Ray cluster: give every ray agent the same spec.address",
            )


def _amount(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise InvalidAgentSpec(f"{what} must be a number >= 0", None)
    return value


_OWN_KEYS = {"CPU": "num_cpus", "GPU": "num_gpus", "memory": "memory"}


def _resources(value: Any, where: str) -> dict[str, float]:
    if not isinstance(value, Mapping) or not value:
        raise InvalidAgentSpec(
            f"{where}: spec.resources must be an object of custom resource amounts", '{"accelerator": 1}'
        )
    for key, amount in value.items():
        own = _OWN_KEYS.get(key)
        if own is not None:
            raise InvalidAgentSpec(f"{where}: spec.resources.{key} is set by its own key", f"use spec.{own}")
        _amount(amount, f"{where}: spec.resources.{key}")
    return dict(value)


def _runtime_env(value: Any, where: str, base_dir: Path) -> dict[str, Any] | None:
    """`spec.runtime_env` as Ray takes it, with a relative local `working_dir` or `py_modules` entry
    resolved against the Blueprint's folder (Ray itself checks the rest when the task is submitted)."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidAgentSpec(
            f"{where}: spec.runtime_env must be an object", 'e.g. {"working_dir": ".", "pip": ["numpy"]}'
        )
    resolved = dict(value)
    working_dir = resolved.get("working_dir")
    if isinstance(working_dir, str):
        resolved["working_dir"] = _local_path(working_dir, base_dir)
    modules = resolved.get("py_modules")
    if isinstance(modules, list):
        resolved["py_modules"] = [_local_path(m, base_dir) if isinstance(m, str) else m for m in modules]
    return resolved


def _local_path(path: str, base_dir: Path) -> str:
    if "://" in path or os.path.isabs(path):
        return path
    return os.fspath(base_dir / path)


def _where(address: str | None) -> str:
    return repr(address) if address is not None else "RAY_ADDRESS or a local instance"


# ── the connection: one per process ────────────────────────────────────────────────────────────


class _Connection:
    """This process's connection to Ray, made by its own thread: `ready` settles once `ray.init` has
    returned (or raised). `ours` is False when the process was connected before (its host called
    `ray.init`)."""

    def __init__(self, address: str | None) -> None:
        self.address = address
        self.ours = True
        self.up = False  # set once connected: read on every attempt, cheaper than asking `ready`
        self.ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self.ready.set_running_or_notify_cancel()  # shared by every waiter: none may cancel it


_CONNECTION: _Connection | None = None
_CONNECTING = threading.Lock()


def _connection(address: str | None) -> _Connection:
    """The connection every attempt waits on, started by the first (and again after one failed)."""
    global _CONNECTION
    with _CONNECTING:
        conn = _CONNECTION
        if conn is None or (conn.ready.done() and conn.ready.exception() is not None):
            conn = _CONNECTION = _Connection(address)
            threading.Thread(target=_keep_connected, args=(conn,), name="mse-ray", daemon=True).start()
    return conn


def _keep_connected(conn: _Connection) -> None:
    """Import ray and connect (off the event loop: both take seconds), then stay alive: a local
    instance that `ray.init` starts goes down with the thread that started it."""
    try:
        import ray

        if ray.is_initialized():
            conn.ours = False
            conn.up = True
            conn.ready.set_result(None)
            return
        local = conn.address is None and not os.environ.get("RAY_ADDRESS")
        options: dict[str, Any] = {"include_dashboard": False} if local else {}
        ray.init(address=conn.address, logging_level=logging.ERROR, **options)
    except BaseException as exc:
        conn.ready.set_exception(exc)
        return
    conn.up = True
    conn.ready.set_result(None)
    threading.Event().wait()


def _connected(address: str | None) -> bool:
    """Whether this process is connected to Ray the way an agent naming `address` needs, right now."""
    conn = _CONNECTION
    if conn is None or not conn.up:
        return False
    return conn.address == address if conn.ours else address is None


async def connect(address: str | None, timeout: float) -> None:
    """Wait until this process is connected to Ray for `address`; `WorkerFailed` saying why if it cannot be."""
    conn = _connection(address)
    ready = conn.ready
    if not ready.done():
        try:
            await asyncio.wait_for(asyncio.wrap_future(ready), timeout)
        except TimeoutError:
            raise WorkerFailed(f"could not connect to Ray at {_where(address)} within {timeout:g} s") from None
        except Exception:
            pass  # reported below
    error = ready.exception()
    if error is not None:
        raise WorkerFailed(f"could not connect to Ray at {_where(address)}: {_one_line(error)}") from error
    if not conn.ours and address is not None:
        raise WorkerFailed(
            f"this process was connected to Ray before its first ray agent ran; spec.address {address!r} "
            "cannot be honoured (omit it to use that connection)"
        )
    if conn.ours and conn.address != address:
        raise WorkerFailed(
            f"this process is connected to Ray at {_where(conn.address)}; this agent names {_where(address)} "
            "(Ray allows one connection per process: give every ray agent the same spec.address)"
        )


# ── on the Ray worker ──────────────────────────────────────────────────────────────────────────


@dataclass(frozen=True, slots=True)
class RemoteFailure:
    """What the agent's function raised on the Ray worker (sent back as the task's value)."""

    type_name: str
    message: str
    frames: tuple[str, ...]
    importing: str | None = None

    def describe(self) -> str:
        text = f"{self.type_name}: {self.message}" if self.message else self.type_name
        if self.importing is not None:
            return (
                f"cannot import {self.importing!r} on the Ray worker: {text} (the worker needs the module: "
                "share the Blueprint's folder with it, or ship it with spec.runtime_env)"
            )
        where = f" at {' < '.join(self.frames)}" if self.frames else ""
        return f"{text} (raised on the Ray worker{where})"


_RESOLVED: dict[tuple[str, str], Callable[..., Any]] = {}


Call: TypeAlias = tuple[str, str, str, str, int, str, Any, dict[str, Any]]
"""What a task gets, as one argument of plain data (Ray serialises each argument on its own, and plain
data without pickling): `(callable, Blueprint folder, encoded token, step id, attempt, agent, input,
context as JSON)`."""


def run_on_worker(call: Call) -> Any:
    """The Ray task: call the agent's function as a `python` agent's is called, on this worker.

    Its exception comes back as a `RemoteFailure` value (Ray would wrap it, or fail to when it does
    not pickle); a `KeyboardInterrupt` is Ray's graceful cancel and ends the task as cancelled.
    """
    target, base_dir, token, task_id, attempt, agent, directive, context = call
    key = (target, base_dir)
    fn = _RESOLVED.get(key)
    if fn is None:
        try:
            fn = _RESOLVED[key] = import_callable(target, Path(base_dir))
        except (Exception, SystemExit) as exc:
            return _failure(exc, importing=target)
    try:
        step_id = StepId.parse(task_id)
        view = AgentContextView.from_json({**context, "task_id": step_id})
        inv = WorkerInvocation(CapToken.decode(token), step_id, attempt, agent, directive, None, None, view)
        result = fn(inv)
        if inspect.isawaitable(result):
            result = asyncio.run(_awaited(result))
    except (Exception, SystemExit) as exc:
        return _failure(exc)
    return result


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


def _failure(exc: BaseException, importing: str | None = None) -> RemoteFailure:
    frames = [
        f"{Path(frame.filename).name}:{frame.lineno} in {frame.name}"
        for frame in traceback.extract_tb(exc.__traceback__)
        if frame.filename != __file__
    ]
    return RemoteFailure(type(exc).__name__, str(exc), tuple(reversed(frames[-TRACEBACK_FRAMES:])), importing)


# ── the spawner ────────────────────────────────────────────────────────────────────────────────


class RayWorker(JoinHandleWorker):
    """One attempt's Ray task; `attempt.ref` is its `ObjectRef` once submitted (for inspection)."""

    __slots__ = ("attempt",)

    def __init__(self, handler: WorkerJoinHandler, attempt: _RayAttempt) -> None:
        super().__init__(handler)
        self.attempt = attempt


class RaySpawner(SpawnerAdapter):
    """Runs each attempt as one Ray task calling `target` (`module:attr`)."""

    worker_kind = "ray"

    def __init__(
        self,
        target: str,
        *,
        base_dir: Path | None = None,
        address: str | None = None,
        options: Mapping[str, Any] | None = None,
        connect_timeout_secs: float = DEFAULT_CONNECT_TIMEOUT_SECS,
        kill_grace_secs: float | None = None,
    ) -> None:
        self.target = target
        self.base_dir = os.fspath(base_dir if base_dir is not None else Path.cwd())
        self.address = address
        self.options = {"max_retries": 0, **(options or {})}
        self.connect_timeout_secs = connect_timeout_secs
        self.kill_grace_secs = kill_grace_secs
        self._remote: Any = None

    def remote_function(self) -> Any:
        """The Ray remote function with this agent's options (made on first use, once connected)."""
        remote = self._remote
        if remote is None:
            import ray

            remote = self._remote = ray.remote(run_on_worker).options(**self.options)
        return remote

    async def spawn(self, engine: Engine, ctx: Ctx, task_id: StepId, attempt: int, token: CapToken) -> Worker:
        try:
            directive = engine.prompt(token, task_id)
        except EngineError as exc:
            raise SpawnInternalError(f"fetch_prompt: {exc}") from exc
        cancel = CancellationToken()
        run = _RayAttempt(self, engine, token, task_id, attempt, directive, AgentContextView.from_ctx(ctx), cancel)
        if _connected(self.address):
            run.submit()  # at once: the task starts on the cluster a loop turn earlier
        run.task = asyncio.create_task(run.drive())
        cancel.on_cancel(run.stop)
        return RayWorker(WorkerJoinHandler(None, cancel, run.task), run)

    def __repr__(self) -> str:
        return f"RaySpawner({self.target!r}, address={self.address!r})"


class _RayAttempt:
    """One attempt: connect, submit the task, wait for it without blocking the loop, report its end."""

    def __init__(
        self,
        spawner: RaySpawner,
        engine: Engine,
        token: CapToken,
        task_id: StepId,
        attempt: int,
        directive: Any,
        context: AgentContextView,
        cancel: CancellationToken,
    ) -> None:
        self.spawner = spawner
        self.engine = engine
        self.token = token
        self.task_id = task_id
        self.attempt = attempt
        self.directive = directive
        self.context = context
        self.cancel = cancel
        self.task: asyncio.Task[None] | None = None
        self.ref: Any = None
        self.refused: WorkerFailed | None = None
        self._waiter: asyncio.Future[Any] | None = None
        self._timers: list[asyncio.TimerHandle] = []

    def submit(self) -> None:
        """Submit the attempt's task (the process is connected); a failure to is kept for `drive` to raise."""
        spawner = self.spawner
        try:
            call: Call = (
                spawner.target,
                spawner.base_dir,
                self.token.encode(),
                str(self.task_id),
                self.attempt,
                self.context.agent,
                self.directive,
                self.context.to_json(),
            )
            self.ref = spawner.remote_function().remote(call)
        except Exception as exc:
            self.refused = WorkerFailed(f"submitting the Ray task failed: {_one_line(exc)}")
            return
        self.engine.record_worker_stats(self.task_id, self.attempt, {"ray_task_id": self.ref.task_id().hex()})
        self._waiter = asyncio.wrap_future(self.ref.future())

    async def drive(self) -> None:
        if self._waiter is None and self.refused is None:
            await connect(self.spawner.address, self.spawner.connect_timeout_secs)
            if self.cancel.is_cancelled():
                raise WorkerCancelled()
            self.submit()
        if self.refused is not None:
            raise self.refused
        assert self._waiter is not None
        try:
            outcome = await self._waiter
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling() > 0:
                self._cancel_task(force=False)
                raise
            raise WorkerCancelled() from None
        except Exception as exc:
            raise _task_error(exc) from exc
        finally:
            for timer in self._timers:
                timer.cancel()
        if self.cancel.is_cancelled():
            raise WorkerCancelled()
        if type(outcome) is RemoteFailure:
            raise WorkerFailed(outcome.describe())
        submit_result(self.engine, self.token, self.task_id, self.attempt, outcome, "ray")

    def stop(self) -> None:
        """The attempt is cancelled: cancel its task gracefully, by force after the grace period, and
        stop waiting for Ray if even that goes unanswered."""
        if self.ref is None:
            if self.task is not None:
                self.task.cancel()  # still connecting: nothing runs on the cluster yet
            return
        if self._waiter is None or self._waiter.done():
            return
        self._cancel_task(force=False)
        grace = self.spawner.kill_grace_secs
        if grace is None:
            grace = self.engine.config.cancel_grace_secs
        loop = asyncio.get_running_loop()
        self._timers.append(loop.call_later(grace, self._cancel_task, True))
        self._timers.append(loop.call_later(grace + FORCED_END_SECS, self._give_up))

    def _cancel_task(self, force: bool) -> None:
        import ray

        self.engine.record_worker_stats(self.task_id, self.attempt, {"ray_cancel": "forced" if force else "graceful"})
        try:
            ray.cancel(self.ref, force=force, recursive=True)
        except Exception as exc:  # the connection is gone: the task goes with it
            log.warning("step %s attempt %s: ray.cancel failed: %s", self.task_id, self.attempt, _one_line(exc))

    def _give_up(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.cancel()


def _task_error(exc: Exception) -> WorkerError:
    """The attempt's error for what waiting on its task raised (the function's own exceptions come back
    as a `RemoteFailure` instead, so this is Ray's: cancelled, a worker lost, a result that did not pickle)."""
    from ray.exceptions import RayTaskError, TaskCancelledError

    if isinstance(exc, TaskCancelledError):
        return WorkerCancelled()
    if isinstance(exc, RayTaskError):
        cause = exc.cause
        described = _one_line(cause) if cause is not None else _one_line(exc)
        return WorkerFailed(
            f"the Ray task failed outside the agent's function (sending its input or its result): {described}"
        )
    return WorkerFailed(f"the Ray task failed: {_one_line(exc)}")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


__all__ = ["EXTRA_HINT", "RayKind", "RaySpawner", "RayWorker", "RemoteFailure", "connect", "run_on_worker"]
