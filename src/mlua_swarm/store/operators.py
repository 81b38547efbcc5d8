"""Stored operator state: sessions (only the bearer's digest) and the seats of runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class OperatorSessionRecord:
    """A joined operator session as persisted: the plaintext bearer never reaches the store."""

    sid: str
    token_digest: str
    desc: str | None
    capability_manifest: Any
    joined_at: float
    last_access: float
    observed: list[dict[str, Any]] = field(default_factory=list)
    observed_total: int = 0


@dataclass(slots=True)
class SeatRecord:
    """Who holds seat `slot` of run `run_id` (`op` None: vacant) and the generation of that assignment."""

    run_id: str
    slot: str
    op: str | None
    desc: str | None
    gen: int


__all__ = ["OperatorSessionRecord", "SeatRecord"]
