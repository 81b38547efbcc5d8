"""A small automated operator: it joins a server and answers every request with a fixed rule.

    python examples/operator_rule.py --server http://127.0.0.1:7777 --desc "rule bot"

The rule, per spawn: act as the sub-agent (fetch the prompt over the worker routes), then
- an agent with a verdict contract gets its first value, or the second one (usually the
  "not yet" verdict) when the prompt contains the word TODO;
- any other agent gets `{"agent", "handled_by", "input"}` echoing its prompt.
Questions are answered "approved"; spawn gates are approved. Write your own operator the same way:
`OperatorClient` does the joining, reconnecting and matching of replies.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

from mlua_swarm.operator import OperatorClient, OperatorClientError, SpawnFrame


def decide(payload: dict[str, Any]) -> tuple[Any, str | None]:
    """The value to submit for a spawn, and the verdict part to stage (for a `part` contract)."""
    prompt = str(payload.get("prompt", ""))
    verdict = payload.get("verdict") or {}
    values = verdict.get("values") or []
    if values:
        chosen = values[1] if "TODO" in prompt and len(values) > 1 else values[0]
        if verdict.get("channel") == "part":
            return {"note": f"rule bot chose {chosen}"}, chosen
        return chosen, None
    try:
        parsed: Any = json.loads(prompt)
    except ValueError:
        parsed = prompt
    return {"agent": payload.get("agent"), "handled_by": "rule bot", "input": parsed}, None


async def handle_spawn(client: OperatorClient, spawn: SpawnFrame) -> None:
    """Do the step as its sub-agent; a refused worker call fails that step, not this operator."""
    worker = client.worker(spawn)
    try:
        payload = await worker.fetch()
        value, verdict = decide(payload)
        if verdict is not None:
            await worker.artifact("verdict", verdict)
        await worker.submit(value)
    except OperatorClientError as exc:
        print(f"step {spawn.task_id} ({spawn.agent}): {exc}", file=sys.stderr, flush=True)
        if exc.status != 410:
            await client.spawn_ack(spawn.req_id, ok=False, error=f"rule bot: {exc.message}")
        return
    await client.spawn_ack(spawn.req_id, {})


async def serve(client: OperatorClient, *, limit: int | None = None) -> int:
    """Answer requests until the session ends (or `limit` spawns were handled); the number handled."""
    handled = 0
    async for request in client.requests():
        if request.type == "spawn":
            assert isinstance(request, SpawnFrame)
            await handle_spawn(client, request)
            handled += 1
            if limit is not None and handled >= limit:
                break
        elif request.type == "ask":
            await client.answer(request.req_id, "approved")
        elif request.type == "hook_before":
            await client.hook_ack(request.req_id, True)
    return handled


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default=os.environ.get("MSE_HTTP", "http://127.0.0.1:7777"))
    parser.add_argument("--desc", default="rule bot")
    parser.add_argument("--sid", default=None, help="rejoin this session (with --token)")
    parser.add_argument("--token", default=None)
    args = parser.parse_args()
    async with OperatorClient(args.server, desc=args.desc, sid=args.sid, token=args.token) as client:
        print(f"joined as {client.sid} (token {client.token})", flush=True)
        await serve(client)


if __name__ == "__main__":
    asyncio.run(main())
