"""The Blueprint document as pydantic models: upstream's 23 top-level keys plus our extensions.

Every typed level refuses unknown keys, as upstream does, so a typo is an error rather than a
silently ignored setting. `flow` stays a raw JSON value here; the flow IR parses it.
Our extensions: agent kinds `python` and `ray`, `AgentDef.timeout_secs` / `AgentDef.retry`, and
the top-level `policy` key.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..core.config import RetryPolicy
from ..core.engine import VerdictContract
from ..middleware.config import PolicyConfig

CURRENT_SCHEMA_VERSION = "0.1.0"
BUILTIN_AGENT_KINDS: tuple[str, ...] = ("lua", "rust_fn", "agent_block", "subprocess", "operator", "python", "ray")
SEMVER_PATTERN = r"^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$"

LintLevel = Literal["allow", "warn", "deny"]
OperatorKindName = Literal["main_ai", "automate", "composite"]
StreamMode = Literal["ndjson_lines", "sse_events", "length_prefixed"]
RetryOutcome = Literal["failed", "blocked", "timeout"]
NonEmptyStr = Annotated[str, Field(min_length=1)]
DEFAULT_RETRY_ON: tuple[RetryOutcome, ...] = ("failed", "timeout")


class Model(BaseModel):
    """Base of every Blueprint model: unknown keys are refused and JSON types are not coerced."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, strict=True)


class ContextPolicy(Model):
    """Filter of the agent context view; `exclude` wins, no `include` passes everything."""

    include: list[str] | None = None
    exclude: list[str] = Field(default_factory=list)
    steps: list[str] | None = None
    steps_exclude: list[str] = Field(default_factory=list)


class AgentProfile(Model):
    """The agent's persona: system prompt, model, tools (usually read from an agent.md)."""

    system_prompt: str = ""
    model: str | None = None
    effort: str | None = None
    tools: list[str] = Field(default_factory=list)
    description: str | None = None
    extras: Any = None
    version_hash: str | None = None
    worker_binding: str | None = Field(None, description="Deprecated Runner source: a worker variant name.")


class AgentMeta(Model):
    """Agent metadata: static step context, context policy, the step's projection name."""

    description: str | None = None
    version: str | None = None
    tags: list[str] = Field(default_factory=list)
    ctx: Any = None
    context_policy: ContextPolicy | None = None
    meta_ref: str | None = None
    projection_name: str | None = None


class VerdictContractDef(Model):
    """The verdict values an agent may report, on the Final body or its staged `verdict` part."""

    channel: Literal["body", "part"] = "body"
    values: list[str]

    def contract(self) -> VerdictContract:
        return VerdictContract(self.channel, tuple(self.values))


class WsOperatorRunner(Model):
    backend: Literal["ws_operator"]
    variant: str
    tools: list[str] | None = None


class WsClaudeCodeRunner(Model):
    backend: Literal["ws_claude_code"]
    variant: str
    tools: list[str] | None = None


class AgentBlockInProcessRunner(Model):
    backend: Literal["agent_block_in_process"]
    tools: list[str] | None = None


class SubprocessOverrides(Model):
    model: str | None = None
    tools: list[str] | None = None
    cwd: str | None = None


class SubprocessRunner(Model):
    backend: Literal["subprocess"]
    template: str = Field(description="Name of an entry in `subprocesses`.")
    overrides: SubprocessOverrides | None = None


Runner = Annotated[
    WsOperatorRunner | WsClaudeCodeRunner | AgentBlockInProcessRunner | SubprocessRunner,
    Field(discriminator="backend"),
]


class RetrySpec(Model):
    """Our extension: new attempts of a step after the listed outcomes, with exponential backoff."""

    max_attempts: int = 1
    backoff_ms: int = 0
    backoff_factor: float = 2.0
    max_backoff_ms: int | None = None
    jitter: float | bool = 0.0
    on: list[RetryOutcome] = Field(default_factory=lambda: list(DEFAULT_RETRY_ON))

    @model_validator(mode="after")
    def _valid_policy(self) -> RetrySpec:
        self.policy()
        return self

    def policy(self) -> RetryPolicy:
        return cast(RetryPolicy, RetryPolicy.from_value(self.model_dump()))


class AgentDef(Model):
    """One agent: what a `step` whose `ref` is `name` dispatches to."""

    name: NonEmptyStr
    kind: NonEmptyStr = Field(
        description="Worker kind; built in: " + ", ".join(BUILTIN_AGENT_KINDS) + " (extensions may add more).",
        json_schema_extra={"examples": list(BUILTIN_AGENT_KINDS)},
    )
    spec: Any = None
    profile: AgentProfile | None = None
    meta: AgentMeta | None = None
    runner: Runner | None = None
    runner_ref: str | None = None
    verdict: VerdictContractDef | None = None
    lints: dict[str, LintLevel] | None = None
    timeout_secs: float | None = Field(None, gt=0)
    retry: RetrySpec | None = None


class OperatorDef(Model):
    """A design-time operator seat that `operator` agents name in `spec.operator_ref`."""

    name: NonEmptyStr
    display_name: str | None = None
    kind: OperatorKindName | None = None
    spec: Any = None
    profile: AgentProfile | None = None
    meta: AgentMeta | None = None


class MetaDef(Model):
    """A named shared context object for `$step_meta.ref` and `AgentMeta.meta_ref`."""

    name: NonEmptyStr
    ctx: Any = None


class CompilerHints(Model):
    per_agent: dict[str, Any] = Field(default_factory=dict)
    global_: Any = Field(None, alias="global")


class CompilerStrategy(Model):
    strict_refs: bool = True
    strict_kind: bool = True
    strict_binding: bool = False


class InlineOrigin(Model):
    kind: Literal["inline"]


class FileOrigin(Model):
    kind: Literal["file"]
    path: str


class AlgoOrigin(Model):
    kind: Literal["algo"]
    session_id: str


Origin = Annotated[InlineOrigin | FileOrigin | AlgoOrigin, Field(discriminator="kind")]


class BlueprintMetadata(Model):
    description: str | None = None
    origin: Origin = Field(default_factory=lambda: InlineOrigin(kind="inline"))
    tags: list[str] = Field(default_factory=list)
    version_label: str | None = Field(None, pattern=SEMVER_PATTERN)
    project_name_alias: str | None = None
    default_run_ttl_secs: int | None = Field(None, ge=0)
    strict_verdict_handling: bool | None = None
    lints: dict[str, LintLevel] | None = None


class SpawnerHints(Model):
    layers: list[str] = Field(default_factory=list)


class ProjectionPlacement(Model):
    root: Literal["work_dir", "project_root"] | None = None
    dir_template: str | None = None


class AuditDef(Model):
    """An after-run observational audit by `agent` of the listed steps (`None` or `"*"` = all)."""

    agent: NonEmptyStr
    steps: list[str] | None = None
    mode: Literal["async", "sync"] = "async"


class NamedRunner(Model):
    name: NonEmptyStr
    runner: Runner


class SubprocessStats(Model):
    usage_ptr: str | None = None
    model_ptr: str | None = None
    num_turns_ptr: str | None = None


class SubprocessOutput(Model):
    format: Literal["json"] | None = None
    result_ptr: str | None = None
    ok_from: str | None = None
    stats: SubprocessStats | None = None


class SubprocessDef(Model):
    """A named command-line template for `Runner{backend: subprocess}`."""

    name: NonEmptyStr
    argv: list[str] = Field(min_length=1)
    stdin: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    output: SubprocessOutput | None = None
    stream_mode: StreamMode | None = None


class Blueprint(Model):
    """A Blueprint: the flow plus the agents its steps name and the settings around them."""

    schema_version: str = Field(CURRENT_SCHEMA_VERSION, pattern=SEMVER_PATTERN)
    id: NonEmptyStr
    flow: Any = Field(description="Flow IR node (flow-ir 0.2.0 wire form: node tag `kind`, expr tag `op`).")
    agents: list[AgentDef] = Field(default_factory=list)
    operators: list[OperatorDef] = Field(default_factory=list)
    metas: list[MetaDef] = Field(default_factory=list)
    hints: CompilerHints = Field(default_factory=lambda: CompilerHints.model_validate({}))
    strategy: CompilerStrategy = Field(default_factory=CompilerStrategy)
    metadata: BlueprintMetadata = Field(default_factory=lambda: BlueprintMetadata.model_validate({}))
    spawner_hints: SpawnerHints = Field(default_factory=SpawnerHints)
    default_agent_kind: NonEmptyStr = "operator"
    default_operator_kind: OperatorKindName | None = None
    default_init_ctx: Any = None
    default_agent_ctx: dict[str, Any] | None = None
    default_context_policy: ContextPolicy | None = None
    projection_placement: ProjectionPlacement | None = None
    audits: list[AuditDef] = Field(default_factory=list)
    degradation_policy: Literal["warn", "fail"] | None = None
    runners: list[NamedRunner] = Field(default_factory=list)
    default_runner: str | None = None
    subprocesses: list[SubprocessDef] = Field(default_factory=list)
    check_policy: Literal["silent", "warn", "strict"] | None = None
    blueprint_ref_includes: list[str] = Field(default_factory=list)
    policy: PolicyConfig | None = Field(None, description="Our extension: middleware policy (docs/middleware.md).")


def blueprint_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a Blueprint document, as `mse bp schema` prints it."""
    schema = Blueprint.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


__all__ = [
    "BUILTIN_AGENT_KINDS",
    "CURRENT_SCHEMA_VERSION",
    "AgentBlockInProcessRunner",
    "AgentDef",
    "AgentMeta",
    "AgentProfile",
    "AlgoOrigin",
    "AuditDef",
    "Blueprint",
    "BlueprintMetadata",
    "CompilerHints",
    "CompilerStrategy",
    "ContextPolicy",
    "FileOrigin",
    "InlineOrigin",
    "LintLevel",
    "MetaDef",
    "Model",
    "NamedRunner",
    "OperatorDef",
    "ProjectionPlacement",
    "RetrySpec",
    "Runner",
    "SpawnerHints",
    "SubprocessDef",
    "SubprocessOutput",
    "SubprocessOverrides",
    "SubprocessRunner",
    "SubprocessStats",
    "VerdictContractDef",
    "WsClaudeCodeRunner",
    "WsOperatorRunner",
    "blueprint_json_schema",
]
