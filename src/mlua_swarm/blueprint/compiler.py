"""Blueprint compilation: references, schema and flow parsing, then upstream's compile checks, in order.

Every check runs and every finding is kept, so one `mse bp lint` shows all the problems of a
document. Any error raises `DiagnosticError`; warnings travel on the result. Agents are built
through their kind (`mlua_swarm.worker.kinds`), so a bad `spec` is caught here, before a run starts.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.config import EngineConfig, RetryPolicy
from ..core.engine import VerdictContract
from ..core.fold import comparable
from ..diagnostics import Diagnostic, DiagnosticError, Level, Location, has_errors
from ..flow.errors import FlowParseError
from ..flow.nodes import Node, Step, parse_node
from ..middleware.link import LinkPlan, plan_link
from ..middleware.registry import LayerRegistry
from ..paths import name_problem
from ..services import RuntimeServices
from ..worker.adapter import SpawnerAdapter
from ..worker.kinds import (
    InvalidAgentSpec,
    LinkEnv,
    agent_kind,
    is_runnable,
    runnable_kinds,
    unavailable_message,
)
from ..worker.pyfn import function_registry
from .lints import LINT_DECLS, QUIET_BY_DEFAULT, TUNABLE, lint_key_known, resolve_setting
from .loader import expand_refs
from .naming import OutClaim, StepNaming
from .schema import (
    BUILTIN_AGENT_KINDS,
    AgentDef,
    Blueprint,
    Runner,
    SubprocessRunner,
    WsClaudeCodeRunner,
)
from .validate import validate_blueprint
from .verdicts import located_nodes, verdict_reads

MAX_RETRY_WAIT_MS = 86_400_000
"""The longest wait between two attempts a Blueprint's retry policy may reach: one day. A policy that
can wait longer (a large `backoff_factor` without `max_backoff_ms` grows past any clock) is refused."""

REMOVED_LAYERS = {"operator_delegate": "operators are reached through agents of kind 'operator'; remove the layer"}


@dataclass(frozen=True, slots=True)
class CompiledAgent:
    """An agent ready to dispatch: its spawner and the per-step policies the engine applies."""

    name: str
    kind: str
    spawner: SpawnerAdapter
    timeout_secs: float | None
    retry: RetryPolicy | None
    verdict: VerdictContract | None
    raw: dict[str, Any]
    runner: Runner | None = None
    """The Runner the agent resolved to (inline, `runner_ref`, legacy binding, `default_runner`)."""
    submit_format: str | None = None
    """`meta.ctx.submit_format`, else `default_agent_ctx.submit_format`."""


@dataclass(slots=True)
class CompiledBlueprint:
    """A checked Blueprint, ready to run: the typed model, the parsed flow, the built agents with
    their policies, the step names, the checked middleware (`link`) and every diagnostic found.

    `raw` (the expanded JSON) is kept for the launch snapshot a stored run is resumed from; what a
    run needs is read from the typed fields.
    """

    blueprint: Blueprint
    raw: dict[str, Any]
    flow: Node
    agents: dict[str, CompiledAgent]
    step_names: StepNaming
    link: LinkPlan
    diagnostics: list[Diagnostic]

    @property
    def id(self) -> str:
        return self.blueprint.id

    @property
    def metas(self) -> dict[str, Any]:
        """`metas` by name: the ctx objects `$step_meta.ref` names."""
        return {meta.name: meta.ctx for meta in self.blueprint.metas}


def compile_blueprint(
    raw: Mapping[str, Any],
    *,
    base_dir: Path,
    fns: dict[str, Callable[..., Any]] | None = None,
    strict: bool = False,
    includes: Sequence[str | Path] = (),
    config: EngineConfig | None = None,
    source: str | None = None,
    services: RuntimeServices | None = None,
    registry: LayerRegistry | None = None,
) -> CompiledBlueprint:
    """Compile a raw Blueprint (references may still be unexpanded) or raise DiagnosticError.

    `fns` are the function ids `rust_fn` agents may name (default: built-ins and entry points).
    `strict` makes every unhandled verdict value an error. `source` is stamped on diagnostics as
    their file. `services` are what the hosting process offers kinds (the server's operator hub).
    `registry` holds the middleware layers `spawner_hints` may name (default: the built-in ones).
    """
    try:
        expanded = expand_refs(raw, base_dir, includes=includes)
        blueprint, flow = _parse(expanded)
    except DiagnosticError as exc:
        raise DiagnosticError(_stamp(exc.diagnostics, source)) from None
    env = LinkEnv(
        base_dir=base_dir,
        blueprint=expanded,
        fns=fns if fns is not None else function_registry(base_dir=base_dir),
        config=config or EngineConfig(),
        services=services,
    )
    run = _Compilation(blueprint, expanded, flow, env, strict)
    compiled = run.compile(registry)
    diagnostics = _stamp(run.diagnostics, source)
    if compiled is None or has_errors(diagnostics):
        raise DiagnosticError(diagnostics)
    compiled.diagnostics = diagnostics
    return compiled


def refuse_unavailable_kinds(compiled: CompiledBlueprint) -> None:
    """Raise `DiagnosticError` (one diagnostic per kind) if any agent cannot run in this process.

    Lint and build accept kinds upstream defines that this installation cannot run yet, and kinds that
    need something only a host provides (an operator hub); a run calls this before anything starts.
    """
    waiting: dict[str, list[str]] = {}
    reasons: dict[str, str] = {}
    host_needs: set[str] = set()
    for agent in compiled.agents.values():
        reason = agent.spawner.unavailable_reason
        if reason is not None:
            host_needs.add(agent.kind)
        elif not is_runnable(agent.kind):
            reason = unavailable_message(agent.kind)
        if reason is not None:
            waiting.setdefault(agent.kind, []).append(agent.name)
            reasons.setdefault(agent.kind, reason)
    if not waiting:
        return
    runnable = _names(runnable_kinds())

    def hint(kind: str) -> str:
        if kind in host_needs:
            return "`mse bp lint` and `mse bp build` accept these agents; running them needs what the message names"
        return (
            f"`mse bp lint` and `mse bp build` accept these agents, but running them needs an "
            f"installation where the '{kind}' kind is available; kinds runnable here: {runnable}"
        )

    raise DiagnosticError(
        [
            Diagnostic(
                "kind-unavailable",
                f"{reasons[kind]} (agents: {', '.join(agents)})",
                location=Location("agent", agents[0]),
                hint=hint(kind),
                stage="launch",
            )
            for kind, agents in waiting.items()
        ]
    )


def fn_registry(extra: Mapping[str, str], base_dir: Path, source: str | None = None) -> dict[str, Callable[..., Any]]:
    """The function ids `rust_fn` agents may name (built-ins, entry points, `--fn ID=module:attr`
    targets in `extra`); an import failure is an `invalid-option` diagnostic."""
    try:
        return function_registry(extra, base_dir)
    except (ImportError, AttributeError, ValueError) as exc:
        raise DiagnosticError([fn_option_diagnostic(exc, source)]) from None


def fn_option_diagnostic(exc: Exception, source: str | None) -> Diagnostic:
    """A bad `--fn` option (malformed, or naming nothing importable)."""
    return Diagnostic(
        "invalid-option",
        f"--fn: {exc}",
        location=Location(file=source),
        hint="pass --fn ID=package.module:function with an importable module",
        stage="load",
    )


def _parse(expanded: Any) -> tuple[Blueprint, Node]:
    diagnostics: list[Diagnostic] = []
    blueprint: Blueprint | None = None
    flow: Node | None = None
    try:
        blueprint = validate_blueprint(expanded)
    except DiagnosticError as exc:
        diagnostics += exc.diagnostics
    if isinstance(expanded, Mapping) and "flow" in expanded:
        try:
            flow = parse_node(expanded["flow"], "$.flow")
        except FlowParseError as exc:
            diagnostics.append(
                Diagnostic("invalid-flow", exc.message, location=Location(json_path=exc.json_path), hint=exc.hint)
            )
    if diagnostics or blueprint is None or flow is None:
        raise DiagnosticError(diagnostics)
    return blueprint, flow


def _stamp(diagnostics: list[Diagnostic], source: str | None) -> list[Diagnostic]:
    if source is None:
        return diagnostics
    return [
        d if d.location.file else dataclasses.replace(d, location=dataclasses.replace(d.location, file=source))
        for d in diagnostics
    ]


def _submit_format(raw_agent: Mapping[str, Any], default_ctx: Mapping[str, Any]) -> str | None:
    meta = raw_agent.get("meta")
    meta_ctx = meta.get("ctx") if isinstance(meta, Mapping) else None
    ctx = meta_ctx if isinstance(meta_ctx, Mapping) else {}
    value = ctx.get("submit_format", default_ctx.get("submit_format"))
    return value if isinstance(value, str) else None


def _names(values: Sequence[str]) -> str:
    return ", ".join(values) if values else "none"


def _suggest(name: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f"did you mean '{close[0]}'? " if close else ""


class _Compilation:
    """One compile run: the checks of upstream's compiler, each adding diagnostics."""

    def __init__(self, bp: Blueprint, raw: dict[str, Any], flow: Node, env: LinkEnv, strict: bool) -> None:
        self.bp = bp
        self.raw = raw
        self.flow = flow
        self.env = env
        self.strict = strict
        self.diagnostics: list[Diagnostic] = []
        self.steps = [(node, where) for node, where in located_nodes(flow) if isinstance(node, Step)]
        self.first_site: dict[str, str] = {}
        for node, where in reversed(self.steps):
            self.first_site[node.ref] = where

    def compile(self, registry: LayerRegistry | None) -> CompiledBlueprint | None:
        """The compiled Blueprint, or None when the middleware configuration has errors."""
        self._check_lint_settings()
        runners = self._resolve_runners()
        self.env.runners = {name: runner for name, runner in runners.items() if runner is not None}
        self._check_spawner_hints()
        self._check_operator_refs()
        self._check_meta_refs()
        self._check_audits()
        agents = self._build_agents(runners)
        self._check_retry_waits()
        self._check_verdicts()
        self._check_step_refs(agents)
        naming = self._step_naming()
        self._check_projection_placement()
        if has_errors(self.diagnostics):
            return None
        try:
            link = plan_link(self.raw, registry)
        except DiagnosticError as exc:
            self.diagnostics += exc.diagnostics
            return None
        self.diagnostics += link.warnings
        return CompiledBlueprint(self.bp, self.raw, self.flow, agents, naming, link, [])

    # -- reporting ---------------------------------------------------------------------------------

    def _agent_loc(self, index: int, suffix: str = "") -> Location:
        return Location("agent", self.bp.agents[index].name, f"$.agents[{index}]{suffix}")

    def _error(self, code: str, message: str, location: Location, hint: str | None) -> None:
        self.diagnostics.append(Diagnostic(code, message, Level.ERROR, location, hint))

    def _finding(
        self, code: str, message: str, location: Location, hint: str | None, agent_lints: Mapping[str, str] | None
    ) -> None:
        """A warning-level finding, hidden by an `allow` setting or made an error by `deny`."""
        setting = resolve_setting(code, agent_lints, self.bp.metadata.lints)
        if setting == "allow":
            return
        if setting == "deny":
            level = Level.ERROR
        elif setting is None and code in QUIET_BY_DEFAULT:
            level = Level.INFO
        else:
            level = Level.WARN
        self.diagnostics.append(Diagnostic(code, message, level, location, hint))

    # -- checks, in upstream's order ------------------------------------------------------------------

    def _check_lint_settings(self) -> None:
        layers: list[tuple[Mapping[str, str] | None, Location]] = [
            (self.bp.metadata.lints, Location(json_path="$.metadata.lints"))
        ]
        layers += [(agent.lints, self._agent_loc(i, ".lints")) for i, agent in enumerate(self.bp.agents)]
        for layer, location in layers:
            for key, level in (layer or {}).items():
                if not lint_key_known(key):
                    self.diagnostics.append(
                        Diagnostic(
                            "unknown-lint-kind",
                            f"unknown lint key '{key}'",
                            Level.WARN,
                            location,
                            _suggest(key, list(LINT_DECLS)) + "use a lint code, 'category:<name>' or 'all'",
                        )
                    )
                elif level == "allow" and key in LINT_DECLS and key not in TUNABLE:
                    self.diagnostics.append(
                        Diagnostic(
                            "non-suppressible-lint",
                            f"'{key}' is always an error and cannot be allowed",
                            Level.WARN,
                            location,
                            f"fix the cause instead, or remove '{key}' from this lints map",
                        )
                    )

    def _resolve_runners(self) -> dict[str, Runner | None]:
        registry: dict[str, Runner] = {}
        for index, named in enumerate(self.bp.runners):
            if named.name in registry:
                self._error(
                    "bound-agent-resolution",
                    f"runner '{named.name}' is declared twice",
                    Location(json_path=f"$.runners[{index}].name"),
                    "give every entry of runners a distinct name",
                )
            registry[named.name] = named.runner
        declared = _names(sorted(registry))
        default: Runner | None = None
        if self.bp.default_runner is not None:
            default = registry.get(self.bp.default_runner)
            if default is None:
                self._error(
                    "bound-agent-resolution",
                    f"default_runner '{self.bp.default_runner}' is not in runners",
                    Location(json_path="$.default_runner"),
                    _suggest(self.bp.default_runner, list(registry)) + f"declared runners: {declared}",
                )
        templates = {sub.name for sub in self.bp.subprocesses}
        resolved: dict[str, Runner | None] = {}
        for index, agent in enumerate(self.bp.agents):
            runner = self._agent_runner(index, agent, registry, default)
            if isinstance(runner, SubprocessRunner) and runner.template not in templates:
                self._error(
                    "bound-agent-resolution",
                    f"runner template '{runner.template}' is not in subprocesses",
                    self._agent_loc(index),
                    f"declared subprocesses: {_names(sorted(templates))}",
                )
            resolved[agent.name] = runner
        return resolved

    def _agent_runner(
        self, index: int, agent: AgentDef, registry: Mapping[str, Runner], default: Runner | None
    ) -> Runner | None:
        if agent.runner is not None:
            return agent.runner
        if agent.runner_ref is not None:
            runner = registry.get(agent.runner_ref)
            if runner is None:
                self._error(
                    "bound-agent-resolution",
                    f"runner_ref '{agent.runner_ref}' is not in runners",
                    self._agent_loc(index, ".runner_ref"),
                    _suggest(agent.runner_ref, list(registry)) + f"declared runners: {_names(sorted(registry))}",
                )
            return runner
        if agent.profile is not None and agent.profile.worker_binding:
            return WsClaudeCodeRunner(
                backend="ws_claude_code", variant=agent.profile.worker_binding, tools=list(agent.profile.tools)
            )
        return default

    def _check_spawner_hints(self) -> None:
        for index, layer in enumerate(self.bp.spawner_hints.layers):
            if layer in REMOVED_LAYERS:
                self._error(
                    "removed-spawner-hint",
                    f"spawner hint '{layer}' was removed",
                    Location(json_path=f"$.spawner_hints.layers[{index}]"),
                    REMOVED_LAYERS[layer],
                )

    def _check_operator_refs(self) -> None:
        operators = [op.name for op in self.bp.operators]
        for index, agent in enumerate(self.bp.agents):
            if agent.kind != "operator" or not isinstance(agent.spec, Mapping):
                continue
            ref = agent.spec.get("operator_ref")
            if isinstance(ref, str) and ref not in operators:
                self._error(
                    "unresolved-operator-ref",
                    f"operator_ref '{ref}' is not in operators",
                    self._agent_loc(index, ".spec.operator_ref"),
                    _suggest(ref, operators) + f"declare it in operators (declared: {_names(operators)})",
                )

    def _check_meta_refs(self) -> None:
        metas = [meta.name for meta in self.bp.metas]
        hint = f"declare it in metas (declared: {_names(metas)})"
        for index, agent in enumerate(self.bp.agents):
            ref = agent.meta.meta_ref if agent.meta else None
            if ref is not None and ref not in metas:
                self._error(
                    "unresolved-meta-ref",
                    f"meta_ref '{ref}' is not in metas",
                    self._agent_loc(index, ".meta.meta_ref"),
                    _suggest(ref, metas) + hint,
                )
        for step, where in self.steps:
            meta = step.meta
            ref = meta.get("ref") if meta else None
            if isinstance(ref, str) and ref not in metas:
                self._error(
                    "unresolved-meta-ref",
                    f"$step_meta.ref '{ref}' is not in metas",
                    Location("step", step.ref, f"{where}.in.value.$step_meta.ref"),
                    _suggest(ref, metas) + hint,
                )

    def _check_audits(self) -> None:
        agents = [agent.name for agent in self.bp.agents]
        for index, audit in enumerate(self.bp.audits):
            if audit.agent not in agents:
                self._error(
                    "unresolved-audit-agent",
                    f"audit agent '{audit.agent}' is not in agents",
                    Location(json_path=f"$.audits[{index}].agent"),
                    _suggest(audit.agent, agents) + f"declared agents: {_names(agents)}",
                )

    def _build_agents(self, runners: Mapping[str, Runner | None]) -> dict[str, CompiledAgent]:
        built: dict[str, CompiledAgent] = {}
        seen: set[str] = set()
        raw_agents = self.raw.get("agents", [])
        default_ctx = self.bp.default_agent_ctx or {}
        for index, agent in enumerate(self.bp.agents):
            if agent.name in seen:
                self._error(
                    "duplicate-agent-name",
                    f"agent '{agent.name}' is declared more than once",
                    self._agent_loc(index, ".name"),
                    "rename one of them; steps name agents by their name",
                )
                continue
            seen.add(agent.name)
            spawner = self._build_one(index, agent, dict(raw_agents[index]))
            if spawner is None:
                continue
            built[agent.name] = CompiledAgent(
                name=agent.name,
                kind=agent.kind,
                spawner=spawner,
                timeout_secs=agent.timeout_secs,
                retry=agent.retry.policy() if agent.retry else None,
                verdict=agent.verdict.contract() if agent.verdict else None,
                raw=dict(raw_agents[index]),
                runner=runners.get(agent.name),
                submit_format=_submit_format(raw_agents[index], default_ctx),
            )
        return built

    def _build_one(self, index: int, agent: AgentDef, raw: dict[str, Any]) -> SpawnerAdapter | None:
        kind = agent_kind(agent.kind)
        if kind is None:
            if agent.kind in BUILTIN_AGENT_KINDS:
                message = unavailable_message(agent.kind)
                hint = f"kinds available here: {_names(runnable_kinds())}"
            else:
                message = f"unknown agent kind '{agent.kind}'"
                hint = _suggest(agent.kind, BUILTIN_AGENT_KINDS) + f"kinds available here: {_names(runnable_kinds())}"
            location = self._agent_loc(index, ".kind")
            if self.bp.strategy.strict_kind:
                self._error("unknown-agent-kind", message, location, hint)
            else:
                self._finding("unknown-agent-kind", message + "; the agent is dropped", location, hint, agent.lints)
            return None
        try:
            return kind.build(raw, self.env)
        except InvalidAgentSpec as exc:
            self._error(exc.code, str(exc), self._agent_loc(index, ".spec"), exc.hint)
            return None
        except Exception as exc:  # user code runs here (imports of `python` agents): report, never crash
            self._error(
                "invalid-agent-spec",
                f"building the agent raised {type(exc).__name__}: {exc}",
                self._agent_loc(index, ".spec"),
                f"the '{agent.kind}' kind could not build this spec; check the code it names",
            )
            return None

    def _check_retry_waits(self) -> None:
        for index, agent in enumerate(self.bp.agents):
            if agent.retry is None:
                continue
            retry = agent.retry
            wait = retry.policy().longest_wait_ms()
            if wait <= MAX_RETRY_WAIT_MS:
                continue
            cap = "" if retry.max_backoff_ms is None else f", max_backoff_ms {retry.max_backoff_ms}"
            shown = "forever" if wait == math.inf else f"{wait:.3g} ms"
            self._error(
                "retry-backoff-too-long",
                f"agent '{agent.name}' would wait {shown} before its last attempt (backoff_ms "
                f"{retry.backoff_ms}, backoff_factor {retry.backoff_factor:g}{cap}); a retry "
                f"waits at most {MAX_RETRY_WAIT_MS} ms (one day)",
                self._agent_loc(index, ".retry"),
                f"set max_backoff_ms to at most {MAX_RETRY_WAIT_MS}, or lower backoff_factor, backoff_ms "
                "or max_attempts",
            )

    def _check_verdicts(self) -> None:
        indexes = {agent.name: i for i, agent in reversed(list(enumerate(self.bp.agents)))}
        handled: dict[str, set[str]] = {name: set() for name in indexes}
        for read in verdict_reads(self.flow):
            index = indexes.get(read.agent)
            contract = self.bp.agents[index].verdict if index is not None else None
            if contract is None:
                continue
            location = Location("step", read.agent, read.where)
            if read.channel != contract.channel:
                self._error(
                    "verdict-channel-mismatch",
                    f"agent '{read.agent}' reports its verdict on the {contract.channel} channel, "
                    f"but this condition reads the {read.channel} channel",
                    location,
                    "compare $.<out>.parts.verdict for a part contract, or $.<out> itself for a body contract",
                )
                continue
            for value in read.values:
                text = comparable(value)
                if text not in contract.values:
                    self._error(
                        "verdict-value-not-in-contract",
                        f"'{text}' is not a verdict value of agent '{read.agent}'",
                        location,
                        _suggest(text, contract.values) + f"declared values: {_names(contract.values)}",
                    )
                handled[read.agent].add(text)
        for name, index in sorted(indexes.items()):
            self._check_unhandled(index, handled[name])

    def _check_unhandled(self, index: int, handled: set[str]) -> None:
        agent = self.bp.agents[index]
        if agent.verdict is None or not agent.verdict.values:
            return
        unread = [v for v in agent.verdict.values if v not in handled]
        deny = self.strict or bool(self.bp.metadata.strict_verdict_handling)
        site = self.first_site.get(agent.name)
        location = Location("step", agent.name, site) if site else self._agent_loc(index, ".verdict")
        hint = "add a branch or loop condition for it, or remove it from the contract"
        if len(unread) == len(agent.verdict.values) and not deny:
            self._finding(
                "verdict-contract-never-read",
                f"no condition reads any verdict value of agent '{agent.name}'",
                location,
                "compare its output in a branch or loop condition, or drop the verdict contract",
                agent.lints,
            )
            if resolve_setting("verdict-value-unhandled", agent.lints, self.bp.metadata.lints) != "deny":
                return
        for value in unread:
            message = f"verdict value '{value}' of agent '{agent.name}' is never handled"
            if deny:
                self._error("verdict-value-unhandled", message, location, hint)
            else:
                self._finding("verdict-value-unhandled", message, location, hint, agent.lints)

    def _check_step_refs(self, agents: Mapping[str, CompiledAgent]) -> None:
        declared = [agent.name for agent in self.bp.agents]
        reported: set[str] = set()
        for step, where in self.steps:
            if step.ref in agents or step.ref in reported:
                continue
            reported.add(step.ref)
            if step.ref in declared:
                continue
            message = f"step ref '{step.ref}' names no agent"
            hint = _suggest(step.ref, declared) + f"declared agents: {_names(declared)}"
            location = Location("step", step.ref, f"{where}.ref")
            if self.bp.strategy.strict_refs:
                self._error("unresolved-agent-ref", message, location, hint)
            else:
                self._finding("unresolved-agent-ref", message, location, hint, None)

    def _step_naming(self) -> StepNaming:
        declared = {
            agent.name: agent.meta.projection_name
            for agent in self.bp.agents
            if agent.meta is not None and agent.meta.projection_name
        }
        for agent_name, projection_name in declared.items():
            problem = name_problem(projection_name)
            if problem is not None:
                self._error(
                    "invalid-projection-name",
                    f"projection_name {projection_name!r} is refused: {problem}",
                    Location("agent", agent_name, "meta.projection_name"),
                    "use a relative name such as 'review' or 'reports/review'",
                )
        claims = ((step.ref, OutClaim.of(step.out.keys)) for step, _ in self.steps)
        naming, clashes = StepNaming.build(claims, declared)
        for clash in clashes:
            message = f"name '{clash.name}' is claimed by steps '{clash.first_ref}' and '{clash.second_ref}'"
            location = Location("step", clash.second_ref, self.first_site.get(clash.second_ref))
            hint = "choose distinct projection_name values or out paths"
            level = Level.ERROR if clash.declared else Level.INFO
            self.diagnostics.append(Diagnostic("step-naming-collision", message, level, location, hint))
        return naming

    def _check_projection_placement(self) -> None:
        placement = self.bp.projection_placement
        template = placement.dir_template if placement else None
        if template is None:
            return
        problem = name_problem(template)
        if problem is not None:
            problem = f"dir_template: {problem}"
        elif "{task_id}" not in template:
            problem = "dir_template must contain {task_id}"
        if problem:
            self._error(
                "invalid-projection-placement",
                problem,
                Location(json_path="$.projection_placement.dir_template"),
                "e.g. workspace/tasks/{task_id}/ctx",
            )


__all__ = [
    "CompiledAgent",
    "CompiledBlueprint",
    "compile_blueprint",
    "fn_option_diagnostic",
    "fn_registry",
    "refuse_unavailable_kinds",
]
