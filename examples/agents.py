"""Python agents used by the example Blueprints (kind `python`, `{"callable": "agents:<name>"}`).

They stand in for real AI agents: each sleeps a moment (so the live progress has something to
show) and returns a small, deterministic value.
"""

from __future__ import annotations

import asyncio
from typing import Any

from mlua_swarm import WorkerInvocation, WorkerResult

PAUSE = 0.15


async def outline(inv: WorkerInvocation) -> dict[str, Any]:
    await asyncio.sleep(PAUSE)
    topic = inv.input
    return {"topic": topic, "sections": [f"why {topic}", f"how {topic}", f"what next for {topic}"]}


async def draft(inv: WorkerInvocation) -> dict[str, Any]:
    await asyncio.sleep(PAUSE)
    source = inv.input
    if "sections" in source:
        return {"text": " / ".join(source["sections"]), "revision": 1}
    previous = source["draft"]
    return {"text": previous["text"] + " (revised)", "revision": previous["revision"] + 1}


async def review(inv: WorkerInvocation) -> str:
    """PASS once the draft has been revised twice; REVISE before that."""
    await asyncio.sleep(PAUSE)
    return "PASS" if inv.input["revision"] >= 3 else "REVISE"


async def polish(inv: WorkerInvocation) -> str:
    await asyncio.sleep(PAUSE)
    return inv.input["text"].upper()


async def review_file(inv: WorkerInvocation) -> dict[str, Any]:
    await asyncio.sleep(PAUSE)
    name = inv.input
    return {"file": name, "findings": len(name) % 3, "note": f"{name}: looks {'fine' if len(name) % 3 == 0 else 'ok'}"}


async def summarize(inv: WorkerInvocation) -> str:
    await asyncio.sleep(PAUSE)
    total = sum(lane["review"]["findings"] for lane in inv.input)
    return "OK" if total == 0 else ("MINOR" if total < 5 else "MAJOR")


async def deploy(inv: WorkerInvocation) -> dict[str, Any]:
    await asyncio.sleep(PAUSE)
    return {"release": inv.input, "url": f"https://staging.invalid/{inv.input}"}


async def smoke_test(inv: WorkerInvocation) -> WorkerResult:
    await asyncio.sleep(PAUSE)
    return WorkerResult({"status": 503, "url": inv.input["url"]}, ok=False)


async def notify(inv: WorkerInvocation) -> str:
    await asyncio.sleep(PAUSE)
    return f"notified: {inv.input}"
