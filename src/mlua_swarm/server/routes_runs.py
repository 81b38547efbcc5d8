"""Runs: list, read, steps, trace, cancel (for real), resume, rerun-from, delete."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..diagnostics import DiagnosticError
from ..ids import RunId, TaskId
from ..store import RunNotFound, RunRecord, RunStatus
from .errors import ApiError, diagnostics_details
from .http import MAX_QUERY_INT, json_object, no_content, ok, parse_id, path_param, query_int, server
from .state import ServerState

TRACE_SCAN_LIMIT = 100_000


async def run_json(state: ServerState, run: RunRecord) -> dict[str, Any]:
    """A run as the API shows it: the record, its step entries, and the upstream field names."""
    steps = await state.store.list_steps(run.run_id)
    body = run.to_json()
    body.update(
        {
            "id": run.run_id,
            "step_entries": [s.to_json() for s in steps],
            "result_ref": run.result,
            "current": {},
            "live": run.run_id in state.runs.live,
        }
    )
    return body


async def _run(state: ServerState, request: Request) -> RunRecord:
    return await state.store.get_run(parse_id(RunId, path_param(request, "id")))


async def list_runs(request: Request) -> Response:
    state = server(request)
    status_text = request.query_params.get("status")
    statuses = None
    if status_text:
        try:
            statuses = [RunStatus(s) for s in status_text.split(",") if s]
        except ValueError:
            raise ApiError(
                400, f"unknown status in {status_text!r}", {"allowed": [s.value for s in RunStatus]}
            ) from None
    task_text = request.query_params.get("task_id")
    task_id = parse_id(TaskId, task_text) if task_text else None
    limit = query_int(request, "limit", 50, minimum=1)
    offset = query_int(request, "offset", 0) or 0
    assert limit is not None
    runs = await state.store.list_runs(status=statuses, task_id=task_id, limit=min(limit + offset, MAX_QUERY_INT))
    return ok({"runs": [r.to_json() | {"id": r.run_id} for r in runs[offset:]]})


async def get_run(request: Request) -> Response:
    state = server(request)
    return ok(await run_json(state, await _run(state, request)))


async def steps(request: Request) -> Response:
    state = server(request)
    run = await _run(state, request)
    entries = await state.store.list_steps(run.run_id)
    return ok({"run_id": run.run_id, "steps": [e.to_json() for e in entries]})


@dataclass(frozen=True, slots=True)
class TraceFilter:
    """The `kind` (comma-separated prefixes), `step` and `attempt` query parameters of trace reads."""

    kinds: tuple[str, ...] = ()
    step: str | None = None
    attempt: int | None = None

    @classmethod
    def of(cls, request: Request) -> TraceFilter:
        kinds = tuple(k for k in (request.query_params.get("kind") or "").split(",") if k)
        attempt = query_int(request, "attempt", None, minimum=1)
        return cls(kinds, request.query_params.get("step") or None, attempt)

    @property
    def empty(self) -> bool:
        return not self.kinds and self.step is None and self.attempt is None

    def matches(self, kind: str, step: str | None, attempt: int | None) -> bool:
        if self.kinds and not kind.startswith(self.kinds):
            return False
        if self.step is not None and step != self.step:
            return False
        return self.attempt is None or attempt == self.attempt


async def trace(request: Request) -> Response:
    """Trace events ascending by seq; `latest=N` (the tail) wins over `after`; unknown runs give []."""
    state = server(request)
    run_id = parse_id(RunId, path_param(request, "id"))
    after = query_int(request, "after", 0) or 0
    limit = query_int(request, "limit", None, minimum=1)
    latest = query_int(request, "latest", None, minimum=1)
    wanted = TraceFilter.of(request)
    try:
        events = await state.store.list_trace(run_id, after=0 if latest else after, limit=TRACE_SCAN_LIMIT)
    except RunNotFound:
        events = []
    events = [e for e in events if wanted.matches(e.kind, e.step_ref, e.attempt)]
    if latest:
        events = events[-latest:]
    elif limit:
        events = events[:limit]
    return ok({"run_id": run_id, "events": [e.to_json() for e in events]})


async def cancel(request: Request) -> Response:
    state = server(request)
    run = await _run(state, request)
    await state.runs.cancel(run.run_id)
    return no_content()


async def resume(request: Request) -> Response:
    state = server(request)
    run_id = parse_id(RunId, path_param(request, "id"))
    try:
        live = await state.runs.resume(run_id)
    except DiagnosticError as exc:
        raise ApiError(422, "the run's Blueprint no longer compiles", diagnostics_details(exc)) from None
    return ok({"run_id": live.run_id, "task_id": live.task_id, "replayed_steps": live.replayed_steps}, 202)


async def rerun_from(request: Request) -> Response:
    state = server(request)
    run_id = parse_id(RunId, path_param(request, "id"))
    body = await json_object(request)
    step = body.get("from_step")
    if not isinstance(step, str) or not step:
        raise ApiError(400, "from_step must name a step")
    await state.store.get_run(run_id, with_result=False)
    logged = len(await state.store.list_replay(run_id))
    try:
        live = await state.runs.rerun_from(run_id, step)
    except DiagnosticError as exc:
        raise ApiError(
            422, "the run's Blueprint no longer compiles; nothing was changed", diagnostics_details(exc)
        ) from None
    body = {
        "run_id": live.run_id,
        "task_id": live.task_id,
        "replayed_steps": live.replayed_steps,
        "dropped_steps": logged - live.replayed_steps,
    }
    return ok(body, 202)


async def delete(request: Request) -> Response:
    state = server(request)
    run = await _run(state, request)
    if run.run_id in state.runs.live:
        raise ApiError(409, f"run {run.run_id} is running", {"hint": f"POST /v1/runs/{run.run_id}/cancel first"})
    await state.store.delete_run(run.run_id)
    await state.store.flush()
    return no_content()


def routes() -> list[BaseRoute]:
    return [
        Route("/v1/runs", list_runs, methods=["GET"]),
        Route("/v1/runs/{id}", get_run, methods=["GET"]),
        Route("/v1/runs/{id}", delete, methods=["DELETE"]),
        Route("/v1/runs/{id}/steps", steps, methods=["GET"]),
        Route("/v1/runs/{id}/trace", trace, methods=["GET"]),
        Route("/v1/runs/{id}/cancel", cancel, methods=["POST"]),
        Route("/v1/runs/{id}/resume", resume, methods=["POST"]),
        Route("/v1/runs/{id}/rerun-from", rerun_from, methods=["POST"]),
    ]


__all__ = ["TRACE_SCAN_LIMIT", "TraceFilter", "routes", "run_json"]
