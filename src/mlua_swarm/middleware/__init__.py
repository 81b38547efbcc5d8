"""The middleware stack around spawning: layers, their registry, and `link`, which assembles a run's stack."""

from .after_run_audit import AfterRunAuditLayer, AuditSupervisor
from .agent_context import AgentContextLayer
from .around import AroundLayer
from .audit import AuditLayer
from .budget import BudgetLayer, CancellableRun
from .concurrency import ConcurrencyLayer
from .config import AuditDef, BudgetConfig, ContextPolicy, PolicyConfig, RateLimitConfig
from .gate import PolicyGateLayer
from .join import after_join, last_final
from .layer import SpawnerLayer
from .link import LinkedSpawner, link
from .long_hold import LongHoldLayer
from .main_ai import MainAILayer
from .rate_limit import RateLimitLayer, TokenBucket
from .registry import LayerFactory, LayerRegistry
from .resolver import AgentResolver, ResolverLayer
from .runtime_keys import RuntimeKeysLayer, TaskInput
from .senior import SeniorEscalationLayer
from .stack import SpawnerStack

__all__ = [
    "AfterRunAuditLayer",
    "AgentContextLayer",
    "AgentResolver",
    "AroundLayer",
    "AuditDef",
    "AuditLayer",
    "AuditSupervisor",
    "BudgetConfig",
    "BudgetLayer",
    "CancellableRun",
    "ConcurrencyLayer",
    "ContextPolicy",
    "LayerFactory",
    "LayerRegistry",
    "LinkedSpawner",
    "LongHoldLayer",
    "MainAILayer",
    "PolicyConfig",
    "PolicyGateLayer",
    "RateLimitConfig",
    "RateLimitLayer",
    "ResolverLayer",
    "RuntimeKeysLayer",
    "SeniorEscalationLayer",
    "SpawnerLayer",
    "SpawnerStack",
    "TaskInput",
    "TokenBucket",
    "after_join",
    "last_final",
    "link",
]
