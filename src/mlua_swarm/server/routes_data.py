"""The data plane: a side channel where a running worker publishes output events too big or too
numerous for its result, and reads back what its run published (worker token as bearer or `?token=`).

Records are kept in the store (outputs of the run) and, for lookups by id or producer name, in a
bounded in-memory index; a record is readable only by workers of the same run.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..ids import secure_hex
from ..store import OutputRecord
from ..worker.output import OutputEventError, parse_output_event
from .errors import ApiError
from .http import json_object, ok, path_param, server
from .routes_worker import WorkerCall, worker_call
from .runs import LiveRun


def _call(request: Request) -> tuple[WorkerCall, LiveRun]:
    call = worker_call(request, request.query_params.get("token"))
    if call.live is None:
        raise ApiError(409, f"step {call.step_id} is not part of a run this server hosts; it has no data plane")
    return call, call.live


async def _emit(request: Request, producer: str | None) -> Response:
    state = server(request)
    call, live = _call(request)
    body = await json_object(request)
    producer = producer or body.get("producer_agent") or call.agent
    if not isinstance(producer, str) or not producer:
        raise ApiError(400, "producer_agent must be a non-empty string")
    try:
        event = parse_output_event(body.get("event"))
    except OutputEventError as exc:
        raise ApiError(400, f"invalid event: {exc}") from None
    parents = body.get("parent_refs") or []
    if not isinstance(parents, list) or not all(isinstance(p, str) for p in parents):
        raise ApiError(400, "parent_refs must be a list of out ids")
    weight = len(await request.body())
    limit = state.config.max_run_data_bytes
    if live.data_bytes + weight > limit:
        raise ApiError(
            413,
            f"run {live.run_id} has published {live.data_bytes} bytes of data records; this one"
            f" ({weight} bytes) would pass the run's limit of {limit}",
            {
                "limit_bytes": limit,
                "held_bytes": live.data_bytes,
                "hint": "publish less (a reference to a file instead of its content), or raise"
                " max_run_data_bytes in the server's config.toml",
            },
        )
    live.data_bytes += weight
    out_id = f"out-{secure_hex(5)}"
    now = time.time()
    encoded = event.to_json()
    record: dict[str, Any] = {
        "out_id": out_id,
        "run_id": live.run_id,
        "task_id": call.step_id,
        "attempt": call.attempt,
        "producer_agent": producer,
        "event": encoded,
        "parent_refs": parents,
        "created_at": now,
    }
    state.data_index.add(record, weight)
    state.store.put_output(OutputRecord(live.run_id, call.step_id, call.attempt, producer, encoded, now))
    summary = {"out_id": out_id, "step_id": call.step_id, "producer_agent": producer, "type": encoded["type"]}
    live.feed.publish("data.emit", call.agent, call.attempt, summary)
    return ok({"out_id": out_id})


async def emit(request: Request) -> Response:
    return await _emit(request, None)


async def emit_named(request: Request) -> Response:
    return await _emit(request, path_param(request, "name"))


async def fetch(request: Request) -> Response:
    state = server(request)
    _, live = _call(request)
    key = path_param(request, "key")
    record = state.data_index.find(live.run_id, key)
    if record is None:
        raise ApiError(404, f"no data record {key!r} in run {live.run_id}")
    return ok(record)


def routes() -> list[BaseRoute]:
    return [
        Route("/v1/data/emit", emit, methods=["POST"]),
        Route("/v1/data/{name}", emit_named, methods=["POST"]),
        Route("/v1/data/{key}", fetch, methods=["GET"]),
    ]


__all__ = ["routes"]
