"""The `main_ai` and `senior_escalation` hints of a server-hosted run, routed to the run's operator session.

The stock layers read `ctx.operator.spawn_hook` / `senior_bridge`; here each attempt of a run that
has an operator gets a ctx whose hook and bridge speak to that run's session over the socket:
`hook_before` (a refused `hook_ack` refuses the spawn), `hook_after` (fire-and-forget) and `ask`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..core.ctx import AgentContextView, OperatorInfo
from ..jsontext import text_of
from ..middleware.around import AroundLayer
from ..middleware.main_ai import MainAILayer
from ..middleware.registry import LayerRegistry
from ..middleware.senior import SeniorEscalationLayer
from .frames import HOOK_PROMPT_CAP, AnswerFrame, AskFrame, HookAckFrame, HookBeforeFrame
from .hub import OperatorHub

if TYPE_CHECKING:
    from ..core.ctx import Ctx
    from ..core.engine import Engine
    from ..ids import StepId
    from ..tokens import CapToken
    from ..worker import Worker
    from ..worker.adapter import SpawnerAdapter


def hook_before_frame(ctx: Ctx, prompt: Any, run_id: str) -> HookBeforeFrame:
    """The `hook_before` of one attempt, with the step's prompt (as its worker gets it) and context view."""
    text = text_of(prompt, lenient=True)
    context = AgentContextView.from_ctx(ctx).to_json()
    context.setdefault("run_id", run_id)
    return HookBeforeFrame(
        req_id="",
        task_id=ctx.task_id,
        agent=ctx.agent,
        attempt=ctx.attempt,
        prompt=text[:HOOK_PROMPT_CAP],
        prompt_truncated=len(text) > HOOK_PROMPT_CAP,
        prompt_chars=len(text),
        context=context,
    )


class RunOperator:
    """The spawn hook and senior bridge of one attempt of a run: whoever holds the run's first seat answers.

    `engine` and the attempt's worker `token` read the step's prompt for `hook_before`.
    """

    def __init__(self, hub: OperatorHub, run_id: str, engine: Engine, token: CapToken) -> None:
        self.hub = hub
        self.run_id = run_id
        self.engine = engine
        self.token = token

    async def before(self, ctx: Ctx) -> None:
        session = self.hub.run_session(self.run_id)
        if session is None:
            return
        prompt = await self.engine.fetch_prompt(self.token, ctx.task_id)
        frame = hook_before_frame(ctx, prompt, self.run_id).to_json()
        pending = self.hub.request(
            session, "hook_before", frame, step_id=ctx.task_id, attempt=ctx.attempt, run_id=self.run_id
        )
        reply = await self.hub.reply(pending)
        if not isinstance(reply, HookAckFrame):
            raise RuntimeError(f"operator replied {reply.type} to hook_before")
        if not reply.ok:
            raise RuntimeError(reply.reason or "operator refused the spawn")

    async def after(self, ctx: Ctx, value: Any) -> None:
        session = self.hub.run_session(self.run_id)
        if session is not None:
            frame = self.hub.hook_after_frame(
                session, task_id=ctx.task_id, agent=ctx.agent, attempt=ctx.attempt, result=value
            )
            self.hub.notify(session, frame)

    async def ask(self, step_id: StepId, question: Any) -> Any:
        session = self.hub.run_session(self.run_id)
        if session is None:
            raise RuntimeError(f"run {self.run_id} has no operator to ask")
        frame = AskFrame(req_id="", task_id=step_id, question=question).to_json()
        pending = self.hub.request(session, "ask", frame, step_id=step_id, run_id=self.run_id)
        reply = await self.hub.reply(pending)
        if not isinstance(reply, AnswerFrame):
            raise RuntimeError(f"operator replied {reply.type} to ask")
        return reply.value


class RunOperatorLayer(AroundLayer):
    """Gives `layer` a ctx whose operator is the run's session (when the run has one), with the
    agent's operator kind and the run's operator id (`operator.kinds`)."""

    def __init__(self, layer: AroundLayer, hub: OperatorHub) -> None:
        self.layer = layer
        self.hub = hub
        self.name = layer.name

    async def around(
        self, inner: SpawnerAdapter, engine: Engine, ctx: Ctx, task_id: StepId, attempt: int, token: CapToken
    ) -> Worker:
        run_id = ctx.meta.runtime.get("run_id")
        if isinstance(run_id, str) and self.hub.run_session(run_id) is not None:
            settings = await self.hub.run_settings(run_id)
            operator = RunOperator(self.hub, run_id, engine, token)
            ctx = ctx.clone()
            ctx.operator = OperatorInfo(settings.kind_of(ctx.agent), settings.id or f"run-{run_id}", operator, operator)
        return await self.layer.around(inner, engine, ctx, task_id, attempt, token)


def operator_layers(hub: OperatorHub, registry: LayerRegistry | None = None) -> LayerRegistry:
    """`registry` (default: the stock one) with `main_ai` and `senior_escalation` routed through `hub`."""
    registry = registry if registry is not None else LayerRegistry.default()
    registry.add_hint("main_ai", lambda _engine: RunOperatorLayer(MainAILayer(), hub))
    registry.add_hint("senior_escalation", lambda _engine: RunOperatorLayer(SeniorEscalationLayer(), hub))
    return registry


__all__ = ["RunOperator", "RunOperatorLayer", "hook_before_frame", "operator_layers"]
