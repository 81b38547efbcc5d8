"""Pydantic models for what `link` reads from a Blueprint: `policy`, `audits` and context policies.

`policy` is ours (unknown keys are refused so a typo is not a silent no-op); `audits` and
`ContextPolicy` follow upstream's shapes (unknown keys are ignored, as upstream does).
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..diagnostics import Diagnostic, DiagnosticError, Location

KIND_PREFIX = "kind:"
WILDCARD = "*"


class RateLimitConfig(BaseModel):
    """A token bucket: `burst` starts at once, then one start per `1 / rate_per_sec` seconds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rate_per_sec: float = Field(gt=0)
    burst: int = Field(default=1, ge=1)


class BudgetConfig(BaseModel):
    """Per-run ceilings; crossing one cancels the run and refuses every later spawn."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_attempts: int | None = Field(default=None, ge=1)
    max_wall_secs: float | None = Field(default=None, gt=0)


class PolicyConfig(BaseModel):
    """The Blueprint's top-level `policy` key (see docs/middleware.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    concurrency: dict[str, int] = Field(default_factory=dict)
    """Agent name (or `*` for all agents together) -> most workers running at once."""
    rate_limits: dict[str, RateLimitConfig] = Field(default_factory=dict)
    """Agent name (or `*` for all agents together) -> token bucket; spawns wait, they do not fail."""
    allow: list[str] | None = None
    """Agent names or `kind:<kind>` that may spawn; None allows every agent."""
    deny: list[str] = Field(default_factory=list)
    """Agent names or `kind:<kind>` that may not spawn; deny beats allow."""
    budget: BudgetConfig | None = None

    @field_validator("concurrency")
    @classmethod
    def _positive_limits(cls, value: dict[str, int]) -> dict[str, int]:
        bad = sorted(name for name, limit in value.items() if limit < 1)
        if bad:
            raise ValueError(f"concurrency limits must be at least 1 (for {', '.join(bad)})")
        return value

    @field_validator("allow", "deny")
    @classmethod
    def _well_formed_rules(cls, value: list[str] | None) -> list[str] | None:
        for rule in value or ():
            if not rule or rule == KIND_PREFIX:
                raise ValueError(f"{rule!r} is not an agent name or 'kind:<kind>'")
        return value


class ContextPolicy(BaseModel):
    """Which non-identity fields of the agent context view a worker sees; exclude beats include."""

    model_config = ConfigDict(frozen=True)

    include: list[str] | None = None
    exclude: list[str] = Field(default_factory=list)
    steps: list[str] | None = None
    steps_exclude: list[str] = Field(default_factory=list)

    def admits(self, key: str) -> bool:
        return key not in self.exclude and (self.include is None or key in self.include)


class AuditDef(BaseModel):
    """One after-run audit: `agent` reviews the steps named in `steps` (None or `*` means every step)."""

    model_config = ConfigDict(frozen=True)

    agent: str = Field(min_length=1)
    steps: list[str] | None = None
    mode: Literal["async", "sync"] = "async"

    def covers(self, step: str) -> bool:
        return self.steps is None or WILDCARD in self.steps or step in self.steps


M = TypeVar("M", bound=BaseModel)


def parse_section(model: type[M], value: Any, json_path: str, code: str) -> M:
    """Validate one Blueprint section; every problem becomes a Diagnostic with its JSON path."""
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise DiagnosticError([_diagnostic(err, json_path, code) for err in exc.errors()]) from None


def _diagnostic(err: Any, json_path: str, code: str) -> Diagnostic:
    path = json_path + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"])
    return Diagnostic(
        code,
        err["msg"],
        location=Location(element="root", json_path=path),
        hint="see docs/middleware.md for the accepted keys and values",
        stage="link",
    )


__all__ = [
    "KIND_PREFIX",
    "WILDCARD",
    "AuditDef",
    "BudgetConfig",
    "ContextPolicy",
    "PolicyConfig",
    "RateLimitConfig",
    "parse_section",
]
