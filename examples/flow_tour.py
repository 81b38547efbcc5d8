"""The agent behind every step of examples/flow_tour.json (see docs/flow.md)."""

from mlua_swarm.worker.adapter import WorkerInvocation


async def size(inv: WorkerInvocation) -> int:
    """The length of a word (or of a list); an empty one is refused (the tour's `try` catches that)."""
    if not inv.input:
        raise ValueError("nothing to measure")
    return len(inv.input)
