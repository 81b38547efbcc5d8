"""Tasks: launch (sync or detached), list, read, re-kick; and the step content of a task's runs.

A launch names its Blueprint inline or by registered id (`latest`, a fixed content hash, or a semver
requirement), resolves the ttl (request > Blueprint `metadata.default_run_ttl_secs` > server default),
creates the task and run rows, and starts the run. Relative references of the Blueprint resolve from
`base_dir` (ours), else `project_root`, else the server's folder. A sync launch waits for the end (504 past the
wait limit, and the run is failed); the run never depends on the client staying connected.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..core.state import StepOutcome
from ..flow.errors import FlowError
from ..flow.paths import parse_path
from ..ids import RunId, TaskId
from ..operator.hub import RunBrief
from ..run import RunResult, Workspace
from ..run.run import checked_policies
from ..store import BlueprintNotFound, LaunchSnapshot, ReplayRow, RunRecord, StepEntry
from ..store.base import blueprint_hash
from .errors import ApiError
from .http import json_object, ok, parse_id, path_param, query_int, server
from .routes_operators import LaunchPin, launch_operator, launch_pin, seat_run
from .runs import LiveRun
from .state import ServerState

TTL_SOURCES = ("request_body", "bp_metadata", "server_default")


@dataclass(frozen=True, slots=True)
class ResolvedBlueprint:
    document: dict[str, Any]
    ref: dict[str, Any]
    """What the task keeps to resolve it again on a re-kick."""
    version: str


def _selector(version: Any) -> str:
    """`{kind: latest|fixed|semver_req}` as a store selector."""
    if version is None:
        return "latest"
    if not isinstance(version, Mapping):
        raise ApiError(400, "blueprint.version must be {kind: latest|fixed|semver_req, ...}")
    kind = version.get("kind")
    if kind == "latest":
        return "latest"
    if kind == "fixed" and isinstance(version.get("value"), str):
        return str(version["value"])
    if kind == "semver_req" and isinstance(version.get("req"), str):
        return str(version["req"])
    raise ApiError(
        400, f"unknown blueprint.version {dict(version)!r}", {"hint": "kind latest, fixed+value, or semver_req+req"}
    )


async def resolve_blueprint(state: ServerState, ref: Any) -> ResolvedBlueprint:
    if not isinstance(ref, Mapping):
        raise ApiError(400, "blueprint must be {kind: inline, value} or {kind: id, id, version?}")
    kind = ref.get("kind")
    if kind == "inline":
        value = ref.get("value", ref.get("blueprint"))
        if not isinstance(value, dict):
            raise ApiError(400, "an inline blueprint needs its JSON object in `value`")
        return ResolvedBlueprint(value, {"kind": "inline", "value": value}, blueprint_hash(value))
    if kind == "id":
        name = ref.get("id")
        if not isinstance(name, str) or not name:
            raise ApiError(400, "blueprint.id must be a non-empty string")
        try:
            found = await state.store.get_blueprint(name, _selector(ref.get("version")))
        except BlueprintNotFound as exc:
            raise ApiError(400, exc.message, {"hint": exc.hint} if exc.hint else None) from None
        if found.archived:
            raise ApiError(409, f"blueprint {name!r} is archived", {"hint": f"POST /v1/blueprints/{name}/unarchive"})
        return ResolvedBlueprint(found.document, dict(ref), found.content_hash)
    raise ApiError(400, f"unknown blueprint kind {kind!r}", {"hint": "use inline or id"})


def _positive(body: Mapping[str, Any], key: str) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ApiError(400, f"{key} must be a positive number of seconds")
    return float(value)


def _ttl(state: ServerState, body: Mapping[str, Any], document: Mapping[str, Any]) -> tuple[float, str]:
    requested = _positive(body, "ttl_secs")
    if requested is not None:
        return requested, "request_body"
    metadata = document.get("metadata")
    declared = metadata.get("default_run_ttl_secs") if isinstance(metadata, Mapping) else None
    if isinstance(declared, int | float) and not isinstance(declared, bool) and declared > 0:
        return float(declared), "bp_metadata"
    return state.config.default_ttl_secs, "server_default"


def _optional_str(body: Mapping[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise ApiError(400, f"{key} must be a string")
    return value


def _path_str(body: Mapping[str, Any], key: str) -> str | None:
    value = _optional_str(body, key)
    if value is not None and "\0" in value:
        raise ApiError(400, f"{key} must be a path, and a path cannot hold a NUL character")
    return value


def merge_ctx(base: Any, override: Any) -> Any:
    """A shallow object merge (the override wins); a non-object on either side replaces wholesale."""
    if override is None:
        return base
    if isinstance(base, Mapping) and isinstance(override, Mapping):
        return {**base, **override}
    return override


def _info(state: ServerState, live: LiveRun, goal: str, options: Mapping[str, Any]) -> dict[str, Any]:
    seats = state.operators.assignees(live.run_id)["seats"] if state.operators is not None else []
    return {
        "run_id": live.run_id,
        "goal": goal,
        "project_root": options.get("project_root"),
        "work_dir": options.get("work_dir"),
        "task_metadata": options.get("task_metadata"),
        "seats": seats,
        "seats_source": "blueprint",
        "note": "",
    }


async def start_run(
    state: ServerState,
    resolved: ResolvedBlueprint,
    init_ctx: Any,
    *,
    goal: str,
    task_input: Mapping[str, Any],
    ttl: float,
    task_id: TaskId | None = None,
    pin: LaunchPin | None = None,
    operator: Mapping[str, Any] | None = None,
) -> tuple[LiveRun, dict[str, Any]]:
    """Compile, seat (operators), record and start one run of `resolved`; returns it with its launch options."""
    if state.stopping.is_set() or state.runs.closing:
        raise ApiError(503, "the server is shutting down")
    work_dir, project_root = task_input.get("work_dir"), task_input.get("project_root")
    refs_from = task_input.get("base_dir") or project_root
    base_dir = Path(refs_from).resolve() if refs_from else state.base_dir
    compiled = state.compile(resolved.document, base_dir=base_dir)
    options = {
        "base_dir": str(base_dir),
        "fns": dict(state.config.fns),
        "source": None,
        "work_dir": work_dir,
        "project_root": project_root,
        "task_metadata": task_input.get("task_metadata"),
        "blueprint_ref": resolved.ref,
        "bound_version": resolved.version,
    }
    if operator:
        options["operator"] = dict(operator)
    workspace = Workspace.from_options(task_input)
    checked_policies(compiled, workspace)  # a plan that cannot run here is refused before any seat is taken
    run_id = RunId.new()
    brief = RunBrief.bounded(goal, project_root, work_dir, task_input.get("task_metadata"))
    await seat_run(state, run_id, compiled, pin, operator, brief)
    live = await state.runs.launch(
        compiled,
        init_ctx,
        LaunchSnapshot(compiled.raw, init_ctx, options),
        workspace=workspace,
        task_id=task_id,
        goal=goal,
        blueprint_ref=resolved.ref,
        timeout_secs=ttl,
        run_id=run_id,
    )
    return live, options


async def wait_for(state: ServerState, live: LiveRun, limit: float) -> RunResult:
    """The run's result, or 504 after `limit` seconds (the run is then failed and its workers cancelled)."""
    try:
        async with asyncio.timeout(limit):
            return await asyncio.shield(live.done)
    except TimeoutError:
        live.run.expire(limit)
        raise ApiError(
            504, f"run {live.run_id} did not finish within {limit}s; it was stopped and marked failed"
        ) from None


def failure_error(result: RunResult) -> ApiError:
    error = result.error or {}
    details = {
        "run_id": result.run_id,
        "status": result.status,
        "failed_step": error.get("failed_step"),
        "verdict_value": error.get("verdict_value"),
        "partial_ctx": result.partial_ctx,
    }
    status = 409 if result.status == "cancelled" else 400
    return ApiError(status, str(error.get("message") or f"run {result.status}"), details)


def _task_input(body: Mapping[str, Any]) -> dict[str, Any]:
    task_input = {key: _path_str(body, key) for key in ("project_root", "work_dir", "base_dir")}
    task_input["task_metadata"] = body.get("task_metadata")
    return task_input


async def launch(request: Request) -> Response:
    state = server(request)
    body = await json_object(request)
    detach = body.get("detach") is True
    timeout = _positive(body, "timeout_secs")
    if body.get("timeout_secs") == 0:
        raise ApiError(400, "timeout_secs must be positive")
    if timeout is not None and detach:
        raise ApiError(400, "timeout_secs applies to a sync launch; a detached run is bounded by ttl_secs")
    if body.get("check_policy") not in (None, "silent", "warn", "strict"):
        raise ApiError(400, "check_policy must be silent, warn or strict")
    pin = launch_pin(state, body)
    operator = launch_operator(body)
    resolved = await resolve_blueprint(state, body.get("blueprint"))
    if body.get("check_policy") is not None:
        resolved = ResolvedBlueprint(
            {**resolved.document, "check_policy": body["check_policy"]}, resolved.ref, resolved.version
        )
    goal = _optional_str(body, "goal") or str(resolved.document.get("id") or "")
    ttl, ttl_source = _ttl(state, body, resolved.document)
    live, options = await start_run(
        state,
        resolved,
        body.get("init_ctx"),
        goal=goal,
        task_input=_task_input(body),
        ttl=ttl,
        pin=pin,
        operator=operator,
    )
    answer: dict[str, Any] = {
        "final_ctx": None,
        "bound_version": resolved.version,
        "effective_ttl_secs": ttl,
        "ttl_source": ttl_source,
        "task_id": live.task_id,
        "run_id": live.run_id,
        "status": "running",
        "info": _info(state, live, goal, options),
    }
    if detach:
        return ok(answer, 202)
    result = await wait_for(state, live, timeout or state.config.sync_timeout_secs)
    if result.status != "done":
        raise failure_error(result)
    return ok({**answer, "final_ctx": result.final_ctx, "status": "done"})


async def list_tasks(request: Request) -> Response:
    state = server(request)
    tasks = await state.store.list_tasks(limit=query_int(request, "limit", 50, minimum=1))
    return ok([t.to_json() for t in tasks])


async def get_task(request: Request) -> Response:
    state = server(request)
    task_id = parse_id(TaskId, path_param(request, "id"))
    task = await state.store.get_task(task_id)
    runs = sorted(await state.store.list_runs(task_id=task_id), key=lambda r: r.created_at)
    return ok({"task": task.to_json(), "runs": [r.to_json() for r in runs]})


async def rekick(request: Request) -> Response:
    """A new run of a stored task: ctx = Blueprint default < task input < override (shallow merges)."""
    state = server(request)
    task_id = parse_id(TaskId, path_param(request, "id"))
    body = await json_object(request, required=False)
    task = await state.store.get_task(task_id)
    runs = await state.store.list_runs(task_id=task_id, limit=1)
    previous: Mapping[str, Any] = {}
    if runs and runs[0].input_json is not None:
        previous = LaunchSnapshot.from_json(runs[0].input_json).options
    task_input = {k: previous.get(k) for k in ("project_root", "work_dir", "task_metadata")}
    task_input["base_dir"] = previous.get("base_dir")
    override = body.get("task_input_override")
    if override is not None:
        if not isinstance(override, Mapping):
            raise ApiError(400, "task_input_override must be an object")
        task_input.update({k: v for k, v in _task_input(override).items() if v is not None})
    detach = body.get("detach") is True
    timeout = _positive(body, "timeout_secs")
    pin = launch_pin(state, body)
    resolved = await resolve_blueprint(state, task.blueprint_ref)
    init_ctx = merge_ctx(task.input_ctx, body.get("init_ctx_override"))
    ttl = state.config.default_ttl_secs
    live, options = await start_run(
        state,
        resolved,
        init_ctx,
        goal=task.goal,
        task_input=task_input,
        ttl=ttl,
        task_id=task_id,
        pin=pin,
        operator=previous.get("operator"),
    )
    answer: dict[str, Any] = {
        "task_id": task_id,
        "run_id": live.run_id,
        "status": "running",
        "info": _info(state, live, task.goal, options),
    }
    if detach:
        return ok(answer, 202)
    result = await wait_for(state, live, timeout or state.config.sync_timeout_secs)
    if result.status != "done":
        raise failure_error(result)
    return ok({**answer, "status": "done", "final_ctx": result.final_ctx}, 201)


# ── step content ─────────────────────────────────────────────────────────────

PREVIEW_BYTES = 512


async def _task_run(state: ServerState, request: Request) -> RunRecord:
    task_id = parse_id(TaskId, path_param(request, "id"))
    await state.store.get_task(task_id)
    which = path_param(request, "run")
    if which == "latest":
        runs = await state.store.list_runs(task_id=task_id, limit=1)
        if not runs:
            raise ApiError(404, f"task {task_id} has no run yet")
        return runs[0]
    run = await state.store.get_run(parse_id(RunId, which))
    if run.task_id != task_id:
        raise ApiError(404, f"run {run.run_id} does not belong to task {task_id}")
    return run


@dataclass(frozen=True, slots=True)
class StepContent:
    name: str
    entry: StepEntry
    value: Any
    source: str

    def encoded(self, path: str | None) -> bytes:
        value = self.value
        if path:
            try:
                value = parse_path(path).get(value)
            except (FlowError, ValueError) as exc:
                raise ApiError(404, f"{path} not found in step {self.name!r}: {exc}") from None
        return json.dumps(value, ensure_ascii=False).encode()


async def _step_contents(state: ServerState, run: RunRecord) -> dict[str, StepContent]:
    """Each step's latest entry and value (the logged pass/skip value, else its error). A `cancelled`
    entry does not replace an earlier one of the same step: fanout lanes that an `any` or `race` join
    no longer needs end cancelled after the lane whose value the step shows."""
    values: dict[str, ReplayRow] = {row.step_ref: row for row in await state.store.list_replay(run.run_id)}
    contents: dict[str, StepContent] = {}
    for entry in await state.store.list_steps(run.run_id):
        if entry.status is StepOutcome.CANCELLED and entry.step_ref in contents:
            continue
        row = values.get(entry.step_ref)
        if row is not None:
            contents[entry.step_ref] = StepContent(entry.step_ref, entry, row.value, "replay_log")
        else:
            contents[entry.step_ref] = StepContent(entry.step_ref, entry, {"error": entry.error}, "step_entry")
    return contents


def _summary(content: StepContent, base: str, path: str | None) -> dict[str, Any]:
    data = content.encoded(path)
    return {
        "name": content.name,
        "status": content.entry.status,
        "size_bytes": len(data),
        "content_type": "application/json",
        "sha256": hashlib.sha256(data).hexdigest(),
        "source": content.source,
        "content_url": f"{base}/{content.name}/content",
        "preview": data[:PREVIEW_BYTES].decode(errors="replace"),
        "truncated": len(data) > PREVIEW_BYTES,
    }


def _base(request: Request, run: RunRecord) -> str:
    return f"/v1/tasks/{run.task_id}/runs/{run.run_id}/steps"


async def task_run_steps(request: Request) -> Response:
    state = server(request)
    run = await _task_run(state, request)
    contents = await _step_contents(state, run)
    steps = [_summary(c, _base(request, run), None) for c in contents.values()]
    return ok({"task_id": run.task_id, "run_id": run.run_id, "steps": steps})


async def _one_step(state: ServerState, request: Request) -> tuple[RunRecord, StepContent]:
    run = await _task_run(state, request)
    name = path_param(request, "step")
    content = (await _step_contents(state, run)).get(name)
    if content is None:
        raise ApiError(404, f"run {run.run_id} has no step {name!r}")
    return run, content


async def task_run_step(request: Request) -> Response:
    state = server(request)
    run, content = await _one_step(state, request)
    return ok(_summary(content, _base(request, run), request.query_params.get("path")))


async def task_run_step_content(request: Request) -> Response:
    state = server(request)
    _, content = await _one_step(state, request)
    data = content.encoded(request.query_params.get("path"))
    etag = f'"sha256:{hashlib.sha256(data).hexdigest()}"'
    if etag in [tag.strip() for tag in request.headers.get("if-none-match", "").split(",")]:
        return Response(status_code=304, headers={"etag": etag})
    return Response(data, media_type="application/json", headers={"etag": etag})


def routes() -> list[BaseRoute]:
    return [
        Route("/v1/tasks", launch, methods=["POST"]),
        Route("/v1/tasks", list_tasks, methods=["GET"]),
        Route("/v1/tasks/{id}", get_task, methods=["GET"]),
        Route("/v1/tasks/{id}/runs", rekick, methods=["POST"]),
        Route("/v1/tasks/{id}/runs/{run}/steps", task_run_steps, methods=["GET"]),
        Route("/v1/tasks/{id}/runs/{run}/steps/{step}", task_run_step, methods=["GET"]),
        Route("/v1/tasks/{id}/runs/{run}/steps/{step}/content", task_run_step_content, methods=["GET"]),
    ]


__all__ = ["TTL_SOURCES", "merge_ctx", "resolve_blueprint", "routes", "start_run", "wait_for"]
