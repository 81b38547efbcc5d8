"""Worker IN/OUT: a running attempt's worker fetches its prompt and submits its result over HTTP.

The bearer is the attempt's `wh-` handle or its full capability token. Every route checks it the same
way: a missing, malformed, forged or expired credential is 401; a credential for another step (or a
token that is not a worker's) is 403; a genuine credential whose attempt or run has ended is 410.
On these routes `task_id` means the engine step id (`ST-…`), as upstream.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from ..core.fold import wrap_skip_marker
from ..core.projection import plain_file_name
from ..core.state import ENDED
from ..errors import EngineError, TokenExpired, TokenNotFound
from ..ids import RunId, StepId
from ..jsontext import loads_strict
from ..operator.hub import OperatorError
from ..tokens import CapToken, Role, TokenDecodeError, TokenRecord
from ..worker.output import Artifact, Final, Inline
from .auth import bearer_of
from .errors import ApiError, map_exception
from .http import json_object, no_content, server
from .runs import LiveRun
from .state import ServerState

log = logging.getLogger(__name__)

VERDICTS = ("pass", "blocked", "skip")
FILE_SENTINEL = "@file:"


@dataclass(frozen=True, slots=True)
class WorkerCall:
    """A verified worker credential: its token, its step, the attempt and the agent; `live` is the
    server-hosted run the step belongs to (None for a step of a run driven directly on the engine by
    code embedding the server, which has no run record here)."""

    token: CapToken
    step_id: StepId
    live: LiveRun | None
    attempt: int
    agent: str


def _record_of(state: ServerState, credential: str) -> TokenRecord:
    """The live record behind a handle or a full token, or the API error that credential deserves."""
    if credential.startswith("wh-"):
        try:
            record = state.engine.resolve_handle(credential)
        except TokenExpired as exc:
            raise ApiError(401, str(exc)) from None
        except TokenNotFound:
            if state.worker_handles.known(credential):
                raise ApiError(410, "the attempt of this worker handle has ended", _gone_hint()) from None
            raise ApiError(401, "unknown worker handle") from None
        state.worker_handles.saw(credential)
        return record
    try:
        token = CapToken.decode(credential)
    except TokenDecodeError as exc:
        raise ApiError(401, f"malformed worker token: {exc}") from None
    try:
        return state.engine.worker_record(token)
    except EngineError as exc:
        raise map_exception(exc) from None


def _gone_hint() -> dict[str, str]:
    return {"hint": "the step's attempt or its run has ended; re-kick the task to run it again"}


def worker_call(request: Request, credential: str | None = None) -> WorkerCall:
    """Verify the request's worker credential (bearer, or `credential`) and find its live step."""
    state = server(request)
    credential = credential or bearer_of(request)
    if not credential:
        raise ApiError(401, "a worker handle or token is required", {"hint": "send Authorization: Bearer wh-…"})
    record = _record_of(state, credential)
    if record.token.role is not Role.WORKER or record.step_id is None:
        raise ApiError(403, f"a {record.token.role.value} token cannot use the worker routes")
    step_id = record.step_id
    asked = request.query_params.get("task_id")
    if asked and asked != step_id:
        raise ApiError(403, f"this credential belongs to step {step_id}, not {asked}")
    live = state.runs.steps.get(step_id) or _spawned_step(state, step_id)
    try:
        snapshot = state.engine.read_task_state(record.token, step_id)
    except EngineError as exc:
        raise map_exception(exc) from None
    if live is None and snapshot.status in ENDED:
        raise ApiError(410, f"step {step_id} is no longer running", _gone_hint())
    return WorkerCall(record.token, step_id, live, snapshot.attempt, snapshot.agent)


def _spawned_step(state: ServerState, step_id: StepId) -> LiveRun | None:
    """A live run's step that its flow did not dispatch (an operator auditor), known from its spawn."""
    found = state.operators.spawned_step(step_id) if state.operators is not None else None
    live = state.runs.live.get(RunId(found[0])) if found is not None else None
    if found is None or live is None:
        return None
    live.steps[step_id] = found[1]
    state.runs.steps[step_id] = live
    return live


def agent_setting(call: WorkerCall, key: str) -> Any:
    """A step setting from the agent's `meta.ctx`, else the Blueprint's `default_agent_ctx`."""
    compiled = call.live.compiled if call.live is not None else None
    if compiled is None:
        return None
    agent = compiled.agents.get(call.agent)
    meta_ctx = ((agent.raw.get("meta") or {}).get("ctx") or {}) if agent is not None else {}
    if key in meta_ctx:
        return meta_ctx[key]
    return (compiled.raw.get("default_agent_ctx") or {}).get(key)


# ── reading ──────────────────────────────────────────────────────────────────


def _system_prompt(call: WorkerCall) -> str | None:
    compiled = call.live.compiled if call.live is not None else None
    agent = compiled.agents.get(call.agent) if compiled is not None else None
    if agent is None:
        return None
    system = (agent.raw.get("profile") or {}).get("system_prompt")
    return system if isinstance(system, str) else None


async def prompt(request: Request) -> Response:
    state = server(request)
    call = worker_call(request)
    payload = await state.engine.fetch_worker_payload(call.token, call.step_id)
    payload["attempt"] = call.attempt
    context = payload.get("context")
    if isinstance(context, dict) and call.live is not None:
        context["run_id"] = call.live.run_id
        workspace = call.live.workspace
        if workspace is not None:
            context["work_dir"] = str(workspace.work_dir) if workspace.work_dir else None
            context["project_root"] = str(workspace.project_root) if workspace.project_root else None
    system = _system_prompt(call)
    if system is not None:
        payload["system"] = system
    return Response(json.dumps(payload, ensure_ascii=False, default=str), media_type="application/json")


async def prompt_system(request: Request) -> Response:
    call = worker_call(request)
    system = _system_prompt(call)
    if system is None:
        raise ApiError(404, f"agent {call.agent!r} has no system prompt")
    return PlainTextResponse(system)


# ── submitting ───────────────────────────────────────────────────────────────


def _ok_and_verdict(request: Request) -> tuple[bool, str]:
    ok_text = request.query_params.get("ok")
    verdict = request.query_params.get("verdict") or ""
    if verdict and verdict not in VERDICTS:
        raise ApiError(400, f"verdict must be one of {', '.join(VERDICTS)}, got {verdict!r}")
    ok: bool | None = None
    if ok_text:
        if ok_text.lower() not in ("true", "false", "1", "0"):
            raise ApiError(400, f"ok must be true or false, got {ok_text!r}")
        ok = ok_text.lower() in ("true", "1")
    if verdict == "blocked" and ok is True:
        raise ApiError(400, "verdict=blocked contradicts ok=true")
    if verdict in ("pass", "skip") and ok is False:
        raise ApiError(400, f"verdict={verdict} contradicts ok=false")
    if not verdict:
        verdict = "pass" if ok is not False else "blocked"
    return verdict != "blocked", verdict


def checked_file(root: Path, path_text: str) -> Path:
    """An absolute path a worker names, accepted only inside `root` (after resolving links).

    A refusal quotes only the text the worker sent: never `root`, where a link led, or an OS message.
    """
    path = Path(path_text)
    if not path.is_absolute():
        raise ApiError(400, f"{FILE_SENTINEL} needs an absolute path, got {_quoted(path_text)}")
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError, ValueError):  # a NUL byte, a loop of links
        raise ApiError(400, f"{_quoted(path_text)} cannot be resolved to a file") from None
    if not resolved.is_relative_to(root.resolve()):
        raise ApiError(400, f"{_quoted(path_text)} is outside the run's work dir")
    return resolved


def _quoted(sent: str) -> str:
    return repr(sent[:200])


def _read_sentinel(state: ServerState, call: WorkerCall, text: str) -> str:
    if agent_setting(call, "allow_file_submit") is not True:
        hint = {"hint": "set allow_file_submit: true in the agent's meta.ctx"}
        raise ApiError(400, f"{FILE_SENTINEL} is not allowed for agent {call.agent!r}", hint)
    workspace = call.live.workspace if call.live is not None else None
    if workspace is None or workspace.work_dir is None:
        raise ApiError(400, f"{FILE_SENTINEL} needs a run launched with work_dir")
    sent = text[len(FILE_SENTINEL) :].strip()
    path = checked_file(workspace.work_dir, sent)
    limit = state.config.max_body_bytes
    # One open file for every check and the read: what is checked is what is read, a FIFO put in its
    # place cannot block the loop (O_NONBLOCK), and a file growing meanwhile is read only to the limit.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise ApiError(404, f"no file at {_quoted(sent)}", {"reason": exc.strerror}) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ApiError(404, f"no file at {_quoted(sent)}", {"reason": "not a regular file"})
        with os.fdopen(fd, encoding="utf-8", closefd=False) as file:
            content = file.read(limit + 1) if info.st_size <= limit else None
    except UnicodeDecodeError:
        raise ApiError(400, f"{_quoted(sent)} is not UTF-8 text") from None
    finally:
        os.close(fd)
    if content is None or len(content) > limit:
        raise ApiError(413, f"{_quoted(sent)} is larger than {limit} bytes", {"limit_bytes": limit})
    return content


def _body_value(call: WorkerCall, text: str) -> Any:
    """The submitted body as the step's value, per the agent's `submit_format`."""
    fmt = agent_setting(call, "submit_format")
    if fmt == "json":
        try:
            return loads_strict(text)
        except ValueError as exc:
            raise ApiError(422, f"submit_format is json but the body is not JSON: {exc}") from None
    return text


async def _text_body(request: Request) -> str:
    try:
        return (await request.body()).decode().rstrip()
    except UnicodeDecodeError:
        raise ApiError(400, "the body must be UTF-8 text") from None


def _check_seat(state: ServerState, call: WorkerCall) -> None:
    """An operator's worker whose seat moved (409) or was vacated (503) since its token was issued is refused."""
    if state.operators is None:
        return
    try:
        state.operators.check_submit(call.token)
    except OperatorError as exc:
        raise ApiError(exc.status, str(exc), {"hint": "the seat's new holder received this step"}) from None


async def submit(request: Request) -> Response:
    """Complete the attempt with the body (`@file:` sentinel, `submit_format`, verdict contract)."""
    state = server(request)
    call = worker_call(request)
    ok, verdict = _ok_and_verdict(request)
    _check_seat(state, call)
    text = await _text_body(request)
    if text.startswith(FILE_SENTINEL):
        text = _read_sentinel(state, call, text)
    value = _body_value(call, text)
    if verdict == "skip":
        value = wrap_skip_marker(value)
    final = Final(Inline(value), ok)
    await state.engine.submit_output(call.token, call.step_id, call.attempt, final, size=len(text))
    return no_content()


async def artifact(request: Request) -> Response:
    """Stage one named part of the attempt (last write wins); folded into `{out, parts}` at the end."""
    state = server(request)
    call = worker_call(request)
    name = request.query_params.get("name") or ""
    if not plain_file_name(name):
        raise ApiError(400, f"artifact name {name!r} must be a plain file name")
    _check_seat(state, call)
    text = await _text_body(request)
    event = Artifact(name, Inline(_body_value(call, text)))
    await state.engine.submit_output(call.token, call.step_id, call.attempt, event, stage=True, size=len(text))
    return no_content()


async def result(request: Request) -> Response:
    """The older JSON route: `{task_id, value, ok=true, attempt?}`."""
    state = server(request)
    call = worker_call(request)
    body = await json_object(request)
    if "value" not in body:
        raise ApiError(400, "the body needs a value")
    task_id, attempt = body.get("task_id"), body.get("attempt")
    if task_id is not None and not isinstance(task_id, str):
        raise ApiError(400, "task_id must be the step id (a string)")
    if attempt is not None and (isinstance(attempt, bool) or not isinstance(attempt, int)):
        raise ApiError(400, "attempt must be an integer")
    if task_id not in (None, call.step_id):
        raise ApiError(403, f"this credential belongs to step {call.step_id}, not {task_id}")
    if attempt not in (None, call.attempt):
        raise ApiError(410, f"attempt {attempt} has ended; the live attempt is {call.attempt}")
    ok = body.get("ok", True)
    if not isinstance(ok, bool):
        raise ApiError(400, "ok must be true or false")
    _check_seat(state, call)
    final = Final(Inline(body["value"]), ok)
    size = len(await request.body())
    await state.engine.submit_output(call.token, call.step_id, call.attempt, final, size=size)
    return no_content()


STATS_KEYS = frozenset({"worker_kind", "model", "usage", "num_turns", "adapter_data", "cost_usd", "elapsed_ms"})


async def stats(request: Request) -> Response:
    """Usage of the attempt (model, tokens, turns); folded into the step entry when it completes."""
    state = server(request)
    call = worker_call(request)
    body = await json_object(request)
    unknown = sorted(set(body) - STATS_KEYS)
    if unknown:
        raise ApiError(400, f"unknown stats fields {unknown}", {"allowed": sorted(STATS_KEYS)})
    if "usage" in body and not isinstance(body["usage"], dict):
        raise ApiError(400, "usage must be an object")
    state.engine.record_worker_stats(call.step_id, call.attempt, body)
    return no_content()


async def degradation(request: Request) -> Response:
    """A tool the worker could not use and what it did instead; recorded in the run's trace."""
    call = worker_call(request)
    body = await json_object(request)
    for key in ("tool", "error", "fallback"):
        if not isinstance(body.get(key), str):
            raise ApiError(400, f"degradation needs a string {key!r}")
    note = body.get("note")
    record = {"tool": body["tool"], "error": body["error"], "fallback": body["fallback"], "note": note}
    if call.live is not None:
        call.live.feed.publish("worker.degradation", call.agent, call.attempt, {"step_id": call.step_id, **record})
    else:
        log.info("worker degradation of step %s (no hosted run to trace it in): %s", call.step_id, record)
    return no_content()


def routes() -> list[BaseRoute]:
    return [
        Route("/v1/worker/prompt", prompt, methods=["GET"]),
        Route("/v1/worker/prompt/system", prompt_system, methods=["GET"]),
        Route("/v1/worker/submit", submit, methods=["POST"]),
        Route("/v1/worker/artifact", artifact, methods=["POST"]),
        Route("/v1/worker/result", result, methods=["POST"]),
        Route("/v1/worker/stats", stats, methods=["POST"]),
        Route("/v1/worker/degradation", degradation, methods=["POST"]),
    ]


__all__ = ["WorkerCall", "agent_setting", "checked_file", "routes", "worker_call"]
