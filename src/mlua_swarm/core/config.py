"""Engine configuration and the per-step retry policy."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ..jsontext import MAX_VALUE_BYTES
from .budget import DEFAULT_MAX_ATTEMPT_OUTPUT_BYTES
from .events import QUEUE_BYTES

RETRYABLE = frozenset({"failed", "blocked", "timeout"})


class CheckPolicy(StrEnum):
    """How fail-open branches of output projection behave: say nothing, log, or fail."""

    SILENT = "silent"
    WARN = "warn"
    STRICT = "strict"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """New attempts of the same step after an outcome listed in `on`, spaced by an exponential backoff.

    `jitter` is a fraction (0..1) of each delay drawn at random and subtracted, so retries of many
    steps do not move in lockstep; `True` means 1.0.
    """

    max_attempts: int = 1
    backoff_ms: int = 0
    backoff_factor: float = 2.0
    max_backoff_ms: int | None = None
    jitter: float = 0.0
    on: frozenset[str] = frozenset({"failed", "timeout"})

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("retry.max_attempts must be at least 1")
        if self.backoff_ms < 0 or (self.max_backoff_ms is not None and self.max_backoff_ms < 0):
            raise ValueError("retry backoff must not be negative")
        if self.backoff_factor < 1.0:
            raise ValueError("retry.backoff_factor must be at least 1")
        if not 0.0 <= float(self.jitter) <= 1.0:
            raise ValueError("retry.jitter must be between 0 and 1")
        unknown = set(self.on) - RETRYABLE
        if unknown:
            raise ValueError(f"retry.on has unknown outcomes {sorted(unknown)}; allowed: {sorted(RETRYABLE)}")

    @classmethod
    def from_value(cls, value: RetryPolicy | Mapping[str, Any] | None) -> RetryPolicy | None:
        if value is None or isinstance(value, RetryPolicy):
            return value
        data = dict(value)
        if "on" in data:
            data["on"] = frozenset(data["on"])
        if isinstance(data.get("jitter"), bool):
            data["jitter"] = 1.0 if data["jitter"] else 0.0
        return cls(**data)

    def delay_ms(self, attempt: int, rng: random.Random | None = None) -> float:
        """The wait before attempt `attempt + 1`, after attempt `attempt` (1-based) ended."""
        delay = self._wait_ms(attempt)
        if self.jitter and delay < math.inf:
            delay -= delay * self.jitter * (rng or random).random()
        return delay

    def longest_wait_ms(self) -> float:
        """The longest wait between two attempts the policy can reach (jitter only shortens it); `inf`
        when it is past what a float holds."""
        return self._wait_ms(self.max_attempts - 1) if self.max_attempts > 1 else 0.0

    def _wait_ms(self, attempt: int) -> float:
        if not self.backoff_ms:
            return 0.0
        try:
            delay = self.backoff_ms * self.backoff_factor ** (attempt - 1)
        except OverflowError:
            delay = math.inf
        return delay if self.max_backoff_ms is None else min(delay, self.max_backoff_ms)

    def to_json(self) -> dict[str, Any]:
        return {
            "max_attempts": self.max_attempts,
            "backoff_ms": self.backoff_ms,
            "backoff_factor": self.backoff_factor,
            "max_backoff_ms": self.max_backoff_ms,
            "jitter": self.jitter,
            "on": sorted(self.on),
        }


@dataclass(slots=True)
class EngineConfig:
    token_secret: bytes | None = None
    """HMAC key; random per engine when unset (stores persist one so tokens survive restarts)."""
    worker_token_ttl_secs: int = 1800
    max_spawn_depth: int = 4
    retain_finished_steps: int = 1024
    """How many finished steps stay readable (state and tail) before eviction; a run forgets its
    own steps as soon as it has recorded them (`Engine.forget_task`)."""
    max_value_bytes: int = MAX_VALUE_BYTES
    """The largest value (as JSON text) an in-process worker may return; a child's frames have their own cap."""
    tail_transient_events: int = 256
    """Progress and Partial events kept per attempt (the newest); they reach observers and the trace
    as they arrive. Finals and Artifacts are always kept."""
    max_attempt_output_bytes: int = DEFAULT_MAX_ATTEMPT_OUTPUT_BYTES
    """What the events one attempt's tail keeps may weigh (`core.budget`); the event that would pass
    it is refused and the attempt fails with `output_budget_exceeded`. Each attempt starts at zero."""
    cancel_grace_secs: float = 5.0
    """Between SIGTERM and SIGKILL (or the equivalent) when a worker is cancelled."""
    check_policy: CheckPolicy = CheckPolicy.WARN
    event_queue_size: int = 10_000
    event_queue_bytes: int = QUEUE_BYTES
    """What the events one engine subscriber holds may weigh (see `core.events`); past it, as past
    `event_queue_size`, the oldest are dropped and the subscriber is told how many."""
    """Per subscriber; a subscriber that falls this far behind loses the oldest events (and is told)."""
    http_base_url: str | None = None
    """The server's base URL when the engine runs inside `mse serve`; child workers get it as `MSE_HTTP`."""
    extras: dict[str, Any] = field(default_factory=dict)


__all__ = ["RETRYABLE", "CheckPolicy", "EngineConfig", "RetryPolicy"]
