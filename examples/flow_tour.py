"""The agent of examples/flow_tour.json (see docs/flow.md)."""

from mlua_swarm.worker.adapter import WorkerInvocation


async def score(inv: WorkerInvocation) -> int:
    """The length of a word; the empty word is refused (the tour's `try` catches that)."""
    if not inv.input:
        raise ValueError("nothing to score")
    return len(inv.input)
