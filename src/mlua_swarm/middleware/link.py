"""`link`: builds a run's spawner stack from a router, the Blueprint and a layer registry.

Spawn order, outermost first (each `?` layer only when its input exists):

    PolicyGate? → Budget? → TaskInput? → AfterRunAudit? → ProjectNameAlias? → AgentContext
    → hint layers (last declared = outermost) → base layers (last registered = outermost)
    → Concurrency? → RateLimit? → router

Join post-processors run in the opposite order, innermost first. The limiters sit next to the
router so that a concurrency slot covers exactly the worker's life and a rate token spaces real
starts; the gate and the budget sit outside everything so a refused spawn costs nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from ..diagnostics import Diagnostic, DiagnosticError, Level, Location, has_errors
from ..worker.adapter import SpawnerAdapter
from .after_run_audit import AfterRunAuditLayer, AuditSupervisor
from .agent_context import AgentContextLayer, agent_context_from_blueprint
from .budget import BudgetLayer, CancellableRun
from .concurrency import ConcurrencyLayer
from .config import KIND_PREFIX, WILDCARD, AuditDef, PolicyConfig, parse_section
from .gate import PolicyGateLayer
from .layer import SpawnerLayer
from .rate_limit import RateLimitLayer
from .registry import REMOVED_HINTS, LayerRegistry
from .runtime_keys import TaskInput, project_name_alias_layer, task_input_layer
from .stack import SpawnerStack

T = TypeVar("T")

if TYPE_CHECKING:
    from ..core.ctx import Ctx
    from ..core.engine import Engine
    from ..ids import StepId
    from ..tokens import CapToken
    from ..worker import Worker


class LinkedSpawner(SpawnerAdapter):
    """The stack `link` built, plus what its run must settle before it finishes.

    Use it as `async with linked:` around the run (a clean exit drains the async audits, any exit
    closes), or call `drain()` and then `aclose()` yourself.
    """

    def __init__(
        self,
        adapter: SpawnerAdapter,
        layers: list[SpawnerLayer],
        audits: AuditSupervisor,
        budget: BudgetLayer | None,
        engine: Engine,
        audit_token: CapToken | None,
    ) -> None:
        self.adapter = adapter
        self.audits = audits
        self.budget = budget
        self._layers = layers
        self._engine = engine
        self._audit_token = audit_token

    @property
    def layer_names(self) -> list[str]:
        """The layers from outermost to innermost."""
        return [layer.name for layer in reversed(self._layers)]

    def layer(self, name: str) -> SpawnerLayer | None:
        """The outermost layer called `name`, if the stack has one."""
        return next((layer for layer in reversed(self._layers) if layer.name == name), None)

    def spawn(
        self, engine: Engine, ctx: Ctx, task_id: StepId, attempt: int, token: CapToken
    ) -> Coroutine[Any, Any, Worker]:
        # A plain function handing back the stack's coroutine: delegation costs no coroutine of its own.
        return self.adapter.spawn(engine, ctx, task_id, attempt, token)

    async def drain(self) -> None:
        """Wait for every outstanding async audit."""
        await self.audits.drain()

    async def aclose(self) -> None:
        """Cancel outstanding audits, stop the budget timer, end the audit session; idempotent."""
        if self.budget is not None:
            self.budget.close()
        await self.audits.aclose()
        if self._audit_token is not None:
            token, self._audit_token = self._audit_token, None
            self._engine.close_session(token)

    async def __aenter__(self) -> LinkedSpawner:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if exc_type is None:
                await self.drain()
        finally:
            await self.aclose()

    def __repr__(self) -> str:
        return f"LinkedSpawner({' → '.join(self.layer_names)})"


@dataclass(frozen=True, slots=True)
class LinkPlan:
    """The middleware a Blueprint asks for, checked: what `link` builds each run's stack from.

    `compile_blueprint` makes it once (its diagnostics are the compile's link findings); every run
    of the compiled Blueprint links its own stack from it.
    """

    registry: LayerRegistry
    hints: tuple[str, ...]
    policy: PolicyConfig
    kinds: Mapping[str, str]
    audits: tuple[AuditDef, ...]
    context: AgentContextLayer
    alias: str | None
    warnings: tuple[Diagnostic, ...]

    def gate(self) -> PolicyGateLayer | None:
        policy = self.policy
        return (
            PolicyGateLayer(policy.allow, policy.deny, self.kinds) if policy.allow is not None or policy.deny else None
        )


def plan_link(blueprint: Mapping[str, Any], registry: LayerRegistry | None = None) -> LinkPlan:
    """Check the Blueprint's middleware configuration against `registry` (default: the built-in layers).

    A removed hint (`removed-spawner-hint`) or a malformed `policy`, `audits`, `spawner_hints` or
    context policy raises `DiagnosticError` carrying every diagnostic found, warnings included.
    """
    registry = registry if registry is not None else LayerRegistry.default()
    diagnostics: list[Diagnostic] = []
    hints = _hint_keys(blueprint, registry, diagnostics)
    policy = _checked(lambda: _policy(blueprint), diagnostics)
    audits = _checked(lambda: _audit_defs(blueprint), diagnostics)
    context = _checked(lambda: agent_context_from_blueprint(blueprint), diagnostics)
    if policy is None or audits is None or context is None or has_errors(diagnostics):
        raise DiagnosticError(diagnostics)
    context_layer, context_diagnostics = context
    diagnostics.extend(context_diagnostics)
    kinds = _agent_kinds(blueprint)
    diagnostics.extend(_policy_warnings(policy, kinds))
    plan = LinkPlan(registry, tuple(hints), policy, kinds, (), context_layer, _project_name_alias(blueprint), ())
    gate = plan.gate()
    if gate is not None:
        audits = _admitted_audits(audits, gate, diagnostics)
    return dataclasses.replace(plan, audits=tuple(audits), warnings=tuple(diagnostics))


def link(
    router: SpawnerAdapter,
    plan: LinkPlan | Mapping[str, Any],
    engine: Engine,
    *,
    run: CancellableRun,
    registry: LayerRegistry | None = None,
    task_input: TaskInput | None = None,
) -> tuple[LinkedSpawner, list[Diagnostic]]:
    """Wrap `router` in the layers `plan` calls for (see the module docstring); returns the linked
    spawner and the plan's warnings. A Blueprint given instead of a plan is planned first (with
    `registry`), raising `DiagnosticError` as `plan_link` does."""
    if not isinstance(plan, LinkPlan):
        plan = plan_link(plan, registry)
    policy = plan.policy
    stack = SpawnerStack(router)
    if policy.rate_limits:
        stack.layer(RateLimitLayer(policy.rate_limits))
    if policy.concurrency:
        stack.layer(ConcurrencyLayer(policy.concurrency))
    for factory in plan.registry.base:
        stack.layer(factory(engine))
    for key in plan.hints:
        stack.layer(plan.registry.hints[key](engine))
    stack.layer(plan.context)
    if plan.alias is not None:
        stack.layer(project_name_alias_layer(plan.alias))
    supervisor = AuditSupervisor()
    audit_token = None
    if plan.audits:
        audit_token = engine.attach("after-run-audit")
        stack.layer(AfterRunAuditLayer(list(plan.audits), router, supervisor, audit_token))
    input_layer = task_input_layer(task_input) if task_input is not None else None
    if input_layer is not None:
        stack.layer(input_layer)
    budget = None
    if policy.budget is not None:
        budget = BudgetLayer(policy.budget, run)
        stack.layer(budget)
    gate = plan.gate()
    if gate is not None:
        stack.layer(gate)
    linked = LinkedSpawner(stack.build(), stack.layers, supervisor, budget, engine, audit_token)
    return linked, list(plan.warnings)


def _checked(parse: Callable[[], T], diagnostics: list[Diagnostic]) -> T | None:
    """`parse()`, or None with its diagnostics collected, so one link reports every problem at once."""
    try:
        return parse()
    except DiagnosticError as exc:
        diagnostics.extend(exc.diagnostics)
        return None


def _hint_keys(blueprint: Mapping[str, Any], registry: LayerRegistry, diagnostics: list[Diagnostic]) -> list[str]:
    section = blueprint.get("spawner_hints")
    if section is None:
        return []
    layers = section.get("layers", []) if isinstance(section, Mapping) else None
    if not isinstance(layers, list) or not all(isinstance(key, str) for key in layers):
        hint = 'write e.g. "spawner_hints": {"layers": ["main_ai"]}'
        message = "spawner_hints.layers must be a list of strings"
        diagnostics.append(_diagnostic("invalid-spawner-hints", message, "$.spawner_hints.layers", hint))
        return []
    keys: list[str] = []
    for index, key in enumerate(layers):
        path = f"$.spawner_hints.layers[{index}]"
        if key in REMOVED_HINTS:
            hint = "delete it; operator routing is declared with an agent of kind 'operator'"
            diagnostics.append(_diagnostic("removed-spawner-hint", f"spawner hint {key!r} was removed", path, hint))
        elif key not in registry.hints:
            known = ", ".join(sorted(registry.hints)) or "none"
            diagnostics.append(
                _diagnostic(
                    "unknown-spawner-hint",
                    f"unknown spawner hint {key!r} is ignored",
                    path,
                    f"known hints: {known}",
                    Level.WARN,
                )
            )
        elif key in keys:
            diagnostics.append(
                _diagnostic(
                    "duplicate-spawner-hint",
                    f"spawner hint {key!r} is declared twice; it is added once",
                    path,
                    "declare each hint once",
                    Level.WARN,
                )
            )
        else:
            keys.append(key)
    return keys


def _policy(blueprint: Mapping[str, Any]) -> PolicyConfig:
    return parse_section(PolicyConfig, blueprint.get("policy") or {}, "$.policy", "invalid-policy")


def _audit_defs(blueprint: Mapping[str, Any]) -> list[AuditDef]:
    section = blueprint.get("audits")
    if section is None:
        return []
    if not isinstance(section, list):
        raise DiagnosticError(
            [
                _diagnostic(
                    "invalid-audit", "audits must be a list", "$.audits", 'write [{"agent": "...", "mode": "sync"}]'
                )
            ]
        )
    return [parse_section(AuditDef, item, f"$.audits[{i}]", "invalid-audit") for i, item in enumerate(section)]


def _admitted_audits(audits: list[AuditDef], gate: PolicyGateLayer, diagnostics: list[Diagnostic]) -> list[AuditDef]:
    """Audits bypass the stack, so an auditor the policy refuses is dropped here, with a warning."""
    admitted: list[AuditDef] = []
    for index, audit in enumerate(audits):
        reason = gate.refusal(audit.agent)
        if reason is None:
            admitted.append(audit)
            continue
        path = f"$.audits[{index}].agent"
        hint = "allow the auditor in policy, or remove the audit"
        diagnostics.append(_diagnostic("audit-agent-denied", f"audit is skipped: {reason}", path, hint, Level.WARN))
    return admitted


def _agent_kinds(blueprint: Mapping[str, Any]) -> dict[str, str]:
    kinds: dict[str, str] = {}
    for agent in blueprint.get("agents") or ():
        if isinstance(agent, Mapping) and isinstance(agent.get("name"), str) and isinstance(agent.get("kind"), str):
            kinds[agent["name"]] = agent["kind"]
    return kinds


def _project_name_alias(blueprint: Mapping[str, Any]) -> str | None:
    metadata = blueprint.get("metadata")
    alias = metadata.get("project_name_alias") if isinstance(metadata, Mapping) else None
    return alias if isinstance(alias, str) and alias else None


def _policy_warnings(policy: PolicyConfig, kinds: Mapping[str, str]) -> list[Diagnostic]:
    """Policy entries naming agents the Blueprint does not declare probably hold a typo."""
    found: list[Diagnostic] = []
    named = [
        *((f"$.policy.concurrency.{a}", a) for a in policy.concurrency),
        *((f"$.policy.rate_limits.{a}", a) for a in policy.rate_limits),
        *((f"$.policy.allow[{i}]", a) for i, a in enumerate(policy.allow or ())),
        *((f"$.policy.deny[{i}]", a) for i, a in enumerate(policy.deny)),
    ]
    for path, name in named:
        if name != WILDCARD and not name.startswith(KIND_PREFIX) and name not in kinds:
            message = f"policy names agent {name!r}, which the Blueprint does not declare"
            hint = "check the spelling against the names in agents[]"
            found.append(_diagnostic("unknown-policy-agent", message, path, hint, Level.WARN))
    return found


def _diagnostic(code: str, message: str, json_path: str, hint: str, level: Level = Level.ERROR) -> Diagnostic:
    return Diagnostic(code, message, level, Location(element="root", json_path=json_path), hint, stage="link")


__all__ = ["CancellableRun", "LinkPlan", "LinkedSpawner", "link", "plan_link"]
