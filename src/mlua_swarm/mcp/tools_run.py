"""Run tools: `swarm_run` (inline, file, registered id), `swarm_status`, `swarm_cancel`, `swarm_run_stats`.

Inline and file runs execute inside this process; their progress comes from the run's observer.
Runs by id execute on mse serve: the tool launches them detached and follows them, so a blocking
call reports progress, honours the client's cancellation (the run is cancelled too) and times out
cleanly.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio
from mcp.server.mcpserver import Context
from pydantic import BaseModel, ConfigDict, Field

from ..blueprint.compiler import CompiledBlueprint, compile_blueprint
from ..blueprint.loader import load_blueprint_source
from ..blueprint.schema import OperatorKindName
from ..diagnostics import Diagnostic, DiagnosticError
from ..ids import StepId
from ..paths import url_segment
from ..run import Run, RunResult, Workspace
from ..server.feed import TERMINAL_KINDS as TERMINAL_EVENTS
from .state import LocalRun, McpState
from .toolkit import ToolBox, ToolFailure, ToolSpec
from .tools_bp import Bind, first_hint, local_path

HEARTBEAT_SECS = 5.0
STREAM_RETRIES = 5
TERMINAL = frozenset({"done", "failed", "cancelled", "interrupted"})


class InlineBlueprint(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["inline"]
    blueprint: Annotated[dict[str, Any], Field(description="The whole Blueprint document (see bp_schema).")]


class RegisteredBlueprint(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["id"]
    id: Annotated[str, Field(min_length=1, description="A Blueprint id registered on mse serve (bp_build).")]
    bind: Annotated[str | None, Field(description="mse serve address for this run; default MSE_HTTP.")] = None


class FileBlueprint(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["file"]
    path: Annotated[str, Field(min_length=1, description="A .json, .yaml or .bp.lua file on this machine.")]


Selector = Annotated[InlineBlueprint | RegisteredBlueprint | FileBlueprint, Field(discriminator="kind")]
RunIdArg = Annotated[str, Field(pattern=r"^R-\S+$", description="The run id swarm_run returned (R-...).")]


@dataclass(slots=True)
class RemoteProgress:
    """What the event stream of a run on the server told so far."""

    last_seq: int = 0
    finished: int = 0
    running: set[str] = field(default_factory=set)
    terminal: bool = False

    def note(self, event: dict[str, Any]) -> None:
        seq = event.get("seq")
        if isinstance(seq, int):
            self.last_seq = max(self.last_seq, seq)
        kind, step = event.get("kind"), str(event.get("step") or "")
        if kind == "step.started":
            self.running.add(step)
        elif kind == "step.finished":
            self.running.discard(step)
            self.finished += 1
        elif kind in TERMINAL_EVENTS:
            self.terminal = True

    def describe(self) -> str:
        running = ", ".join(sorted(self.running)) or "-"
        return f"{self.finished} step(s) done; running: {running}"


class StepTally:
    """Run observer: counts steps and wakes the waiting tool call on every change."""

    def __init__(self, run: LocalRun, changed: asyncio.Event) -> None:
        self._run = run
        self._changed = changed
        self._started: dict[str, float] = {}

    def step_started(self, step_ref: str, step_id: StepId | None, node_index: int | None) -> None:
        self._run.steps_running.add(step_ref)
        self._started[step_ref] = time.monotonic()
        self._changed.set()

    def step_finished(self, step_ref: str, step_id: StepId | None, status: str, elapsed: float, detail: Any) -> None:
        self._run.steps_running.discard(step_ref)
        self._run.steps_done += 1
        self._run.step_rows.append(
            {"step_ref": step_ref, "step_id": step_id, "status": status, "duration_ms": round(elapsed * 1000, 3)}
        )
        self._changed.set()


def compile_selected(blueprint: InlineBlueprint | FileBlueprint) -> CompiledBlueprint:
    """Compile an inline or file Blueprint, or raise a ToolFailure listing its diagnostics."""
    try:
        if isinstance(blueprint, FileBlueprint):
            file = local_path(blueprint.path)
            raw, base_dir = load_blueprint_source(file)
            return compile_blueprint(raw, base_dir=base_dir, source=str(file))
        return compile_blueprint(blueprint.blueprint, base_dir=Path.cwd(), source="inline")
    except DiagnosticError as exc:
        raise ToolFailure(
            "invalid-blueprint",
            "the Blueprint was refused:\n" + "\n".join(d.render() for d in exc.diagnostics),
            first_hint(exc.diagnostics) or "fix it (bp_schema shows the format; bp_doctor explains findings)",
            {"diagnostics": [d.to_json() for d in exc.diagnostics]},
        ) from None


async def execute_local(
    run: Run, local: LocalRun, changed: asyncio.Event, init_ctx: Any, entered: asyncio.Future[list[Diagnostic]]
) -> RunResult:
    """Enter and execute `run`; `entered` resolves with its link warnings once it started (or with
    the error that kept it from starting)."""
    try:
        async with run:
            entered.set_result(list(run.warnings))
            return await run.execute(init_ctx)
    except BaseException as exc:
        if not entered.done():
            if isinstance(exc, Exception):
                entered.set_exception(exc)
            else:
                entered.cancel()
        raise


def local_report(run_id: str, run: LocalRun) -> dict[str, Any]:
    """swarm_status for a run of this process."""
    report: dict[str, Any] = {
        "run_id": run_id,
        "where": "local",
        "blueprint_id": run.blueprint_id,
        "steps_done": run.steps_done,
        "steps_running": sorted(run.steps_running),
        "cancel_requested": run.run.cancel_reason is not None,
    }
    if run.task is None or not run.task.done():
        report["status"] = "running"
        return report
    result = run.result
    if result is None:
        report["status"] = "failed"
        exc = None if run.task.cancelled() else run.task.exception()
        report["error"] = {"message": f"run crashed: {type(exc).__name__}: {exc}" if exc else "run task cancelled"}
        return report
    report.update(result.to_json())
    return report


def step_stats(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-step rows plus totals and a per-model breakdown."""
    totals = {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0, "duration_ms_sum": 0.0}
    by_model: dict[str, dict[str, int]] = {}
    with_stats = 0
    for row in rows:
        totals["duration_ms_sum"] += float(row.get("duration_ms") or 0)
        usage = row.get("usage") or {}
        if usage or row.get("model"):
            with_stats += 1
        for key in ("input_tokens", "output_tokens", "total_tokens"):
            totals[key] += int(usage.get(key) or 0)
        model = row.get("model")
        if model:
            entry = by_model.setdefault(str(model), {"steps": 0, "total_tokens": 0})
            entry["steps"] += 1
            entry["total_tokens"] += int(usage.get("total_tokens") or 0)
    return {
        "steps": rows,
        "totals": {**totals, "steps_total": len(rows), "steps_with_stats": with_stats},
        "by_model": by_model,
    }


async def wait_with_progress(
    ctx: Context,
    done: Callable[[], bool],
    changed: asyncio.Event,
    describe: Callable[[], str],
    timeout: float,
) -> bool:
    """Wait until `done()`, False when `timeout` passed first. A progress notification (progress:
    seconds waited, total: `timeout`, message: `describe()`) goes out whenever the description
    changes and every few seconds. `changed` is set by whoever makes progress."""
    started = time.monotonic()
    last: str | None = None
    while True:
        changed.clear()
        if done():
            return True
        waited = time.monotonic() - started
        remaining = timeout - waited
        if remaining <= 0:
            return False
        message = describe()
        if message != last:
            await ctx.report_progress(round(waited, 3), timeout, message)
            last = message
        with anyio.move_on_after(min(HEARTBEAT_SECS, remaining)) as heartbeat:
            await changed.wait()
        if heartbeat.cancelled_caught:
            last = None


def add_run_tools(box: ToolBox, state: McpState) -> None:
    async def run_local(
        ctx: Context,
        blueprint: InlineBlueprint | FileBlueprint,
        init_ctx: dict[str, Any] | None,
        timeout_secs: float,
        detach: bool,
        workspace: Workspace,
    ) -> dict[str, Any]:
        compiled = compile_selected(blueprint)
        run = Run(compiled, engine=state.engine, workspace=workspace)
        local = LocalRun(run, str(compiled.raw.get("id") or "") or None)
        changed = asyncio.Event()
        run.observer = StepTally(local, changed)
        entered: asyncio.Future[list[Diagnostic]] = asyncio.get_running_loop().create_future()
        local.task = asyncio.create_task(
            execute_local(run, local, changed, init_ctx, entered), name=f"mse-mcp-run-{run.run_id}"
        )
        local.task.add_done_callback(lambda _t: changed.set())
        try:
            warnings = compiled.diagnostics + await entered
        except DiagnosticError as exc:
            await asyncio.gather(local.task, return_exceptions=True)
            raise ToolFailure(
                "invalid-blueprint",
                "the Blueprint cannot run:\n" + "\n".join(d.render() for d in exc.diagnostics),
                first_hint(exc.diagnostics),
            ) from None
        run_id = str(run.run_id)
        state.runs[run_id] = local
        warned = [d.to_json() for d in warnings]
        if detach:
            return {"run_id": run_id, "status": "running", "where": "local", "warnings": warned}
        task = local.task

        def describe() -> str:
            running = ", ".join(sorted(local.steps_running)) or "-"
            return f"{local.steps_done} step(s) done; running: {running}"

        try:
            finished = await wait_with_progress(ctx, task.done, changed, describe, timeout_secs)
        except BaseException:
            run.cancel("the MCP client cancelled the swarm_run call")
            with anyio.CancelScope(shield=True):
                await asyncio.wait({task})
            raise
        if not finished:
            run.cancel(f"swarm_run timed out after {timeout_secs:g}s")
            await asyncio.wait({task})
        report = local_report(run_id, local)
        report["warnings"] = warned
        if not finished:
            report["hint"] = "raise timeout_secs, or pass detach=true and follow it with swarm_status"
        return report

    async def run_remote(
        ctx: Context,
        blueprint: RegisteredBlueprint,
        init_ctx: dict[str, Any] | None,
        timeout_secs: float,
        detach: bool,
        workspace: Workspace,
        pin: dict[str, Any],
        ttl_secs: int | None,
    ) -> dict[str, Any]:
        api = state.api(blueprint.bind)
        body: dict[str, Any] = {
            "blueprint": {"kind": "id", "id": blueprint.id},
            "init_ctx": init_ctx if init_ctx is not None else {},
            "detach": True,
            **{k: v for k, v in pin.items() if v is not None},
        }
        if workspace.work_dir:
            body["work_dir"] = str(workspace.work_dir)
        if workspace.project_root:
            body["project_root"] = str(workspace.project_root)
        body["ttl_secs"] = ttl_secs if ttl_secs is not None else (None if detach else int(timeout_secs) + 60)
        body = {k: v for k, v in body.items() if v is not None}
        launched = await api.call("POST", "/v1/tasks", json=body)
        run_id = str(launched.get("run_id"))
        if detach:
            return {**launched, "status": "running", "where": "server", "server": api.base_url}
        changed = asyncio.Event()
        seen = RemoteProgress()

        async def follow() -> None:
            """Read the run's events until its terminal one; a dropped stream is resumed where it stopped."""
            for _ in range(STREAM_RETRIES):
                try:
                    async for event in api.events(f"/v1/runs/{url_segment(run_id)}/events", after=seen.last_seq):
                        seen.note(event)
                        changed.set()
                        if seen.terminal:
                            return
                    return
                except ToolFailure:
                    status = (await api.call("GET", f"/v1/runs/{url_segment(run_id)}")).get("status")
                    if status in TERMINAL:
                        return
            raise ToolFailure(
                "server-unreachable",
                f"lost the event stream of {run_id} {STREAM_RETRIES} times",
                "the run goes on on the server: follow it with swarm_status",
            )

        follower = asyncio.create_task(follow())
        follower.add_done_callback(lambda _t: changed.set())
        try:
            finished = await wait_with_progress(ctx, follower.done, changed, seen.describe, timeout_secs)
        except BaseException:
            follower.cancel()
            with anyio.CancelScope(shield=True):
                await asyncio.gather(follower, return_exceptions=True)
                await api.call("POST", f"/v1/runs/{url_segment(run_id)}/cancel")
            raise
        if not finished:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)
            await api.call("POST", f"/v1/runs/{url_segment(run_id)}/cancel")
            raise ToolFailure(
                "run-timeout",
                f"run {run_id} did not finish within {timeout_secs:g}s and was cancelled",
                "raise timeout_secs, or pass detach=true and follow the run with swarm_status",
            )
        await follower
        record = await api.call("GET", f"/v1/runs/{url_segment(run_id)}")
        return server_report(launched, record)

    async def swarm_run(
        ctx: Context,
        blueprint: Annotated[
            Selector | dict[str, Any],
            Field(
                description='Which Blueprint: {"kind": "inline", "blueprint": {...}} (runs here), '
                '{"kind": "file", "path": "x.bp.lua"} (runs here), or {"kind": "id", "id": "my-bp"} '
                "(runs on mse serve). A bare Blueprint object is taken as inline."
            ),
        ],
        init_ctx: Annotated[
            dict[str, Any] | None, Field(description="The flow's starting ctx, merged over default_init_ctx.")
        ] = None,
        timeout_secs: Annotated[
            float, Field(gt=0, le=86400, description="How long a blocking call waits; the run is cancelled then.")
        ] = 300,
        detach: Annotated[
            bool, Field(description="Return the run id at once and let the run go on; follow it with swarm_status.")
        ] = False,
        operator_sid: Annotated[
            str | None,
            Field(description="Pin a run by id to this operator session (S-...); default: this process's only one."),
        ] = None,
        operator_desc: Annotated[
            str | None, Field(description="Why the pinned session drives this run (one line, shown to others).")
        ] = None,
        operator_slot: Annotated[
            str | None, Field(description="Which operator seat the pin fills, when the Blueprint declares several.")
        ] = None,
        ttl_secs: Annotated[
            int | None, Field(gt=0, description="Upper bound on a run by id's lifetime on the server.")
        ] = None,
        operator_id: Annotated[
            str | None,
            Field(min_length=1, description="A run by id: the operator id its steps carry (a label; upstream's)."),
        ] = None,
        operator_kind: Annotated[
            OperatorKindName | None,
            Field(
                description="A run by id: the operator kind of all its agents (main_ai/composite: the main_ai "
                "layer's hook_before/hook_after reach the operator; automate: they do not)."
            ),
        ] = None,
        operator_kind_overrides: Annotated[
            dict[str, OperatorKindName] | None,
            Field(description="A run by id: the operator kind of single agents, {agent: kind}; wins over the rest."),
        ] = None,
        work_dir: Annotated[str | None, Field(description="Folder step outputs are written under.")] = None,
        project_root: Annotated[str | None, Field(description="The project the run works on.")] = None,
    ) -> dict[str, Any]:
        selector = blueprint if isinstance(blueprint, BaseModel) else bare_inline(blueprint)
        workspace = Workspace(
            Path(work_dir).expanduser() if work_dir else None, Path(project_root).expanduser() if project_root else None
        )
        operator = {"kind": operator_kind, "id": operator_id, "per_agent_kinds": operator_kind_overrides}
        if isinstance(selector, RegisteredBlueprint):
            pin: dict[str, Any] = {
                "operator_sid": operator_sid,
                "operator_desc": operator_desc,
                "operator_slot": operator_slot,
            }
            pin = state.auto_pin(selector.bind, pin, selector.id)
            if any(v is not None for v in operator.values()):
                pin["operator"] = {k: v for k, v in operator.items() if v is not None}
            return await run_remote(ctx, selector, init_ctx, timeout_secs, detach, workspace, pin, ttl_secs)
        if operator_sid or operator_slot or ttl_secs or any(v is not None for v in operator.values()):
            raise ToolFailure(
                "invalid-arguments",
                "operator_sid, operator_slot, operator_id, operator_kind, operator_kind_overrides and ttl_secs "
                "apply to runs by id (on mse serve) only: a run inside this process has no operator session "
                "to hook or ask",
                'register the Blueprint with bp_build and run {"kind": "id", "id": ...}, or drop those arguments',
            )
        return await run_local(ctx, selector, init_ctx, timeout_secs, detach, workspace)

    box.add(
        ToolSpec(
            "swarm_run",
            swarm_run,
            """Run a Blueprint and (by default) wait for its result.

- inline / file: the run executes inside this MCP process; no server needed.
- id: the run executes on mse serve (register it first with bp_build). If this process joined as
  an operator (mse_operator_join) the run is pinned to that session, so its operator steps come
  back to you through mse_pending_wait. operator_kind / operator_kind_overrides say which agents'
  spawns ask you first (hook_before, when the Blueprint has the main_ai layer): automate skips it.
Blocking calls send progress notifications and stop the run if you cancel the call or the
timeout passes. With detach=true you get {run_id, status: "running"} at once; use swarm_status
to follow it and swarm_cancel to stop it. The answer of a finished run carries status
(done | failed | cancelled), final_ctx, or error and partial_ctx.""",
            {"blueprint": {"kind": "id", "id": "review-notes"}, "init_ctx": {"topic": "MCP"}, "detach": False},
            open_world=True,
        )
    )

    async def swarm_status(run_id: RunIdArg, bind: Bind = None) -> dict[str, Any]:
        local = state.runs.get(run_id)
        if local is not None:
            return local_report(run_id, local)
        record = await state.api(bind).call("GET", f"/v1/runs/{url_segment(run_id)}")
        return server_report({"run_id": run_id}, record)

    box.add(
        ToolSpec(
            "swarm_status",
            swarm_status,
            """Where a run stands: status (running | done | failed | cancelled | interrupted), the steps
finished and running, and the result once it ended. Works for runs of this process and for runs
on mse serve (any driver's).""",
            {"run_id": "R-0123456789abcdef"},
            read_only=True,
            open_world=True,
        )
    )

    async def swarm_cancel(
        run_id: RunIdArg,
        bind: Bind = None,
        reason: Annotated[str, Field(max_length=500, description="Why; recorded with the run.")] = "cancelled via MCP",
    ) -> dict[str, Any]:
        local = state.runs.get(run_id)
        if local is not None:
            local.run.cancel(reason)
            if local.task is not None:
                await asyncio.wait({local.task})
            return local_report(run_id, local)
        api = state.api(bind)
        await api.call("POST", f"/v1/runs/{url_segment(run_id)}/cancel", json={"reason": reason})
        record = await api.call("GET", f"/v1/runs/{url_segment(run_id)}")
        return server_report({"run_id": run_id}, record)

    box.add(
        ToolSpec(
            "swarm_cancel",
            swarm_cancel,
            """Stop a running run for real: running workers are cancelled (child processes are
terminated) and the run ends cancelled. A run that already finished keeps its status. Returns
the run's status after the cancel.""",
            {"run_id": "R-0123456789abcdef"},
            destructive=True,
            open_world=True,
        )
    )

    async def swarm_run_stats(run_id: RunIdArg, bind: Bind = None) -> dict[str, Any]:
        local = state.runs.get(run_id)
        if local is not None:
            return {"run_id": run_id, "where": "local", **step_stats(list(local.step_rows))}
        record = await state.api(bind).call("GET", f"/v1/runs/{url_segment(run_id)}")
        rows = [entry_row(e) for e in record.get("step_entries") or [] if isinstance(e, dict)]
        return {"run_id": run_id, "where": "server", "status": record.get("status"), **step_stats(rows)}

    box.add(
        ToolSpec(
            "swarm_run_stats",
            swarm_run_stats,
            """Cost and latency of a run: one row per finished step (status, attempt, duration, worker
kind, model, token usage), totals and a per-model breakdown. Usage appears only where workers
reported it: compare steps_with_stats to steps_total before reading totals as the full cost.""",
            {"run_id": "R-0123456789abcdef"},
            read_only=True,
            open_world=True,
        )
    )


def bare_inline(value: dict[str, Any]) -> InlineBlueprint:
    if "kind" in value:
        raise ToolFailure(
            "invalid-arguments",
            f"blueprint.kind is {value.get('kind')!r} but the selector's other keys do not match it",
            'use {"kind": "inline", "blueprint": {...}}, {"kind": "file", "path": "..."} '
            'or {"kind": "id", "id": "..."}',
        )
    return InlineBlueprint(kind="inline", blueprint=value)


def entry_row(entry: dict[str, Any]) -> dict[str, Any]:
    keys = ("step_ref", "step_id", "status", "attempt", "duration_ms", "worker_kind", "model", "usage", "num_turns")
    return {k: entry.get(k) for k in keys if k in entry}


def server_report(launched: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """A server run record in the shape swarm_run / swarm_status answer with."""
    status = record.get("status")
    report: dict[str, Any] = {
        "run_id": record.get("id") or record.get("run_id") or launched.get("run_id"),
        "task_id": record.get("task_id") or launched.get("task_id"),
        "where": "server",
        "status": status,
        "steps": [entry_row(e) for e in record.get("step_entries") or [] if isinstance(e, dict)],
    }
    result = record.get("result_ref")
    if status == "done":
        report["final_ctx"] = result
    elif status in TERMINAL and isinstance(result, dict):
        report["error"] = result.get("error")
        report["partial_ctx"] = result.get("partial_ctx")
    if "bound_version" in launched:
        report["bound_version"] = launched["bound_version"]
    return report


__all__ = ["RunResult", "add_run_tools", "server_report", "step_stats"]
