"""`RuntimeServices`: facilities a hosting process (the server) offers the Blueprints it compiles and runs.

A plain `mse run` has none; agent kinds that need one (`operator` needs the operator hub) are then
built but refuse to run, saying what is missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .operator.hub import OperatorHub


@dataclass(frozen=True, slots=True)
class RuntimeServices:
    operators: OperatorHub | None = None
    """The server's WebSocket operator hub: sessions, parking and run seats."""
    adaptive_inline: bool = True
    """Whether a plain `def` agent that leaves `spec.inline` unset may move onto the event loop once it
    proves quick (`worker.adapter.InProcSpawner`). The server keeps such agents in worker threads:
    there one slow call on the loop would hold up every run and request it serves."""


__all__ = ["RuntimeServices"]
