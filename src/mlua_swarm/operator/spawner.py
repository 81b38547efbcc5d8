"""The `operator` agent kind: a step executed by whoever holds one of the run's operator seats.

`spec.operator_ref` names a seat (`operators[].name`); the agent also needs a worker binding, an
explicit `runner: {backend: "ws_operator", variant, tools}` or the legacy `profile.worker_binding`.
At dispatch the seat's current holder is looked up in the operator hub, a `spawn` frame goes to
that session (or waits on it while it is disconnected), the operator's sub-agent fetches the
prompt and submits over the worker routes, and the operator's `spawn_ack` ends the attempt. A
`spawn_ack` without an HTTP submit writes its own value as the Final.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..cancel import CancellationToken
from ..core.ctx import AgentContextView
from ..ids import WorkerId
from ..jsontext import compact
from ..middleware.join import last_final
from ..worker import JoinHandleWorker, Worker, WorkerCancelled, WorkerFailed, WorkerJoinHandler
from ..worker.adapter import SpawnerAdapter
from ..worker.errors import SpawnError, SpawnInternalError
from ..worker.kinds import AgentKind, InvalidAgentSpec, LinkEnv
from ..worker.output import Final, Inline
from .frames import SpawnAckFrame, SpawnFrame, SpawnHaltFrame, WorkerBinding, halt_marker
from .hub import OperatorError, OperatorHub, PendingRequest

if TYPE_CHECKING:
    from ..core.ctx import Ctx
    from ..core.engine import Engine
    from ..ids import StepId
    from ..tokens import CapToken

log = logging.getLogger(__name__)

BINDING_HINT = (
    'add runner: {"backend": "ws_operator", "variant": "claude", "tools": []} (or legacy profile.worker_binding)'
)
UNAVAILABLE = (
    "agent kind 'operator' needs an operator hub, which only a server has: run this Blueprint on `mse serve` "
    "with its seats held by an operator session, `mse run --server URL --operator-sid S-…` (or POST /v1/tasks "
    "with operator_sid)"
)


class OperatorWorker(JoinHandleWorker):
    """A step held by an operator."""


class SeatUnheld(SpawnError):
    """The step's operator seat has no holder (or is not one of the run's): how the run was launched,
    not a fault of the engine, so its message carries no `internal:` prefix."""

    code = "seat_unheld"


class OperatorSpawner(SpawnerAdapter):
    """Sends each attempt to the current holder of seat `seat` (see the module docstring)."""

    def __init__(self, agent: str, seat: str, binding: WorkerBinding, hub: OperatorHub | None) -> None:
        self.agent = agent
        self.seat = seat
        self.binding = binding
        self.hub = hub

    @property
    def unavailable_reason(self) -> str | None:
        """Why this agent cannot run here (no hub), or None."""
        return UNAVAILABLE if self.hub is None else None

    async def spawn(self, engine: Engine, ctx: Ctx, task_id: StepId, attempt: int, token: CapToken) -> Worker:
        hub = self.hub
        if hub is None:
            raise SpawnInternalError(UNAVAILABLE)
        run_id = ctx.meta.runtime.get("run_id")
        if not isinstance(run_id, str):
            raise SpawnInternalError(f"operator seat '{self.seat}': the step belongs to no run")
        try:
            session, assignee = hub.holder(run_id, self.seat)
        except OperatorError as exc:
            raise SeatUnheld(str(exc)) from exc
        try:
            prompt = await engine.fetch_prompt(token, task_id)
        except Exception as exc:
            raise SpawnInternalError(f"fetch_prompt: {exc}") from exc
        handle = ctx.meta.runtime.get("worker_handle")
        frame = SpawnFrame(
            req_id="",
            task_id=task_id,
            agent=ctx.agent,
            attempt=attempt,
            capability_token=token.encode(),
            worker_handle=None if handle is None else str(handle),
            worker=self.binding,
            directive=spawn_directive(ctx, self.binding, hub.base_url, run_id, prompt),
        ).to_json()
        pending = hub.request(
            session,
            "spawn",
            frame,
            step_id=task_id,
            attempt=attempt,
            run_id=run_id,
            slot=self.seat,
            gen=assignee.gen,
            token=token,
        )
        cancel = CancellationToken()
        completion = asyncio.ensure_future(self._settle(hub, engine, pending, cancel, task_id, attempt, token))
        return OperatorWorker(WorkerJoinHandler(WorkerId.new(), cancel, completion))

    async def _settle(
        self,
        hub: OperatorHub,
        engine: Engine,
        pending: PendingRequest,
        cancel: CancellationToken,
        task_id: StepId,
        attempt: int,
        token: CapToken,
    ) -> None:
        stop = asyncio.ensure_future(cancel.cancelled())
        try:
            waiting: set[asyncio.Future[Any]] = {pending.future, stop}
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if not pending.future.done():
                hub.withdraw(pending, "step cancelled")
                raise WorkerCancelled()
            try:
                reply = pending.future.result()
            except OperatorError as exc:
                raise WorkerFailed(str(exc)) from exc
            if isinstance(reply, SpawnHaltFrame):
                value: Any = halt_marker(reply)
                ok = True
            elif isinstance(reply, SpawnAckFrame):
                if reply.error is not None:
                    raise WorkerFailed(reply.error)
                if reply.stats:
                    engine.record_worker_stats(task_id, attempt, {"worker_kind": "operator", **reply.stats})
                value, ok = reply.value, reply.ok
            else:
                raise WorkerFailed(f"operator replied {reply.type} to a spawn")
            if last_final(engine.output_tail(task_id, attempt)) is None:
                await self._fallback_final(engine, pending.token or token, task_id, attempt, value, ok)
        finally:
            stop.cancel()
            hub.finish(pending)

    async def _fallback_final(
        self, engine: Engine, token: CapToken, task_id: StepId, attempt: int, value: Any, ok: bool
    ) -> None:
        """No sub-agent submitted: the ack's value is the Final (re-minting an expired token first)."""
        minted = None
        if token.is_expired():
            minted = token = engine.remint_worker_token(token)
        try:
            await engine.submit_output(token, task_id, attempt, Final(Inline(value), ok))
        finally:
            if minted is not None:
                engine.forget_worker_token(minted)


def spawn_directive(ctx: Ctx, binding: WorkerBinding, base_url: str | None, run_id: str, prompt: Any) -> str:
    """What an AI operator reads: start a sub-agent with four lines; it fetches and submits itself."""
    view = AgentContextView.from_ctx(ctx)
    base = base_url or "<this server's URL: see GET /v1/doctor>"
    context = [
        f"{key}: {value if isinstance(value, str) else compact(value)}"
        for key, value in (
            ("project_root", view.project_root),
            ("work_dir", view.work_dir),
            ("task_metadata", view.task_metadata),
            ("project_name_alias", view.project_name_alias),
        )
        if value is not None
    ]
    context += [f"{key}: {compact(value)}" for key, value in sorted(view.extra.items())]
    task = prompt if isinstance(prompt, str) else compact(prompt)
    lines = [
        f"[mse spawn: agent @{ctx.agent}]",
        "worker routes:",
        f"  GET  {base}/v1/worker/prompt?task_id={ctx.task_id}",
        f"  POST {base}/v1/worker/submit",
        "auth: Authorization: Bearer <worker_handle of this spawn frame (wh-...)>",
        f"task_id: {ctx.task_id}",
        f"agent_id: {ctx.agent}",
        *context,
        f"task_directive: {task[:2000]}",
        "",
        f'Start one sub-agent of type "{binding.variant}" and give it exactly these four lines:',
        f"  agent_id: {ctx.agent}",
        "  worker_handle: <worker_handle of this spawn frame>",
        f"  base_url: {base}",
        f"  task_id: {ctx.task_id}",
        "The sub-agent fetches its system text and prompt itself (GET, bearer = handle), does the work as "
        f"@{ctx.agent}, and POSTs its raw result to /v1/worker/submit. Then reply spawn_ack "
        "{req_id, value: {}, ok: true}: the submitted body is the step's value. Do not fetch the prompt "
        "yourself and do not rewrite the sub-agent's answer. If that sub-agent type does not exist, reply "
        "spawn_ack with ok=false and an error saying so.",
        f"observe the run: GET {base}/v1/runs/{run_id}",
    ]
    return "\n".join(lines)


class OperatorAgentKind(AgentKind):
    """`kind: operator` (see the module docstring)."""

    name = "operator"

    def build(self, agent: Mapping[str, Any], env: LinkEnv) -> SpawnerAdapter:
        name = str(agent.get("name"))
        spec = agent.get("spec")
        seat = spec.get("operator_ref") if isinstance(spec, Mapping) else None
        if not isinstance(seat, str) or not seat:
            declared = [op.get("name") for op in env.blueprint.get("operators") or () if isinstance(op, Mapping)]
            raise InvalidAgentSpec(
                f"operator agent '{name}' needs spec.operator_ref naming one of its Blueprint's operators[] seats",
                f'write "spec": {{"operator_ref": "{declared[0] if declared else "main-ai"}"}}',
            )
        runner = env.runners.get(name)
        variant = getattr(runner, "variant", None)
        if runner is None or not isinstance(variant, str):
            raise InvalidAgentSpec(
                f"operator agent '{name}' has no worker binding (an explicit runner or legacy profile.worker_binding)",
                BINDING_HINT,
                code="worker-binding-missing",
            )
        tools = getattr(runner, "tools", None) or []
        binding = WorkerBinding(variant=variant, tools=list(tools))
        hub = env.services.operators if env.services is not None else None
        return OperatorSpawner(name, seat, binding, hub)


__all__ = ["OperatorAgentKind", "OperatorSpawner", "OperatorWorker", "SeatUnheld", "spawn_directive"]
