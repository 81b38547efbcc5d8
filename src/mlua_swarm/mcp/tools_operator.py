"""Operator, seat and worker tools: join mse serve as an operator, receive its requests, answer them,
and act as the sub-agent of a spawn; plus `mse_doctor`.

Each joined session is an `OperatorClient` held by this process (its token never leaves it).
`mse_pending_wait` hands out one request at a time and remembers where each spawn's worker
handle belongs, so `mse_worker_fetch` / `mse_worker_submit` need only the handle.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from mcp.server.mcpserver import Context
from pydantic import Field, JsonValue

from ..jsontext import compact
from ..operator.client import OperatorClient, OperatorClientError
from ..operator.frames import CancelFrame, ServerFrame, SpawnFrame
from ..paths import url_segment
from .http import STATUS_HINTS, server_url
from .state import McpState, WorkerRoute, package_version
from .toolkit import ToolBox, ToolFailure, ToolSpec
from .tools_bp import Bind

T = TypeVar("T")

HEARTBEAT_SECS = 5.0

Sid = Annotated[str, Field(pattern=r"^S-\S+$", description="The operator session id mse_operator_join returned.")]
OptionalSid = Annotated[
    str | None,
    Field(pattern=r"^S-\S+$", description="Which joined session to act as; default: this process's only one."),
]
RunId = Annotated[str, Field(pattern=r"^R-\S+$", description="The run id (R-...).")]
Handle = Annotated[
    str,
    Field(min_length=1, description="The spawn's worker_handle (wh-...), or its capability_token when it has none."),
]
BaseUrl = Annotated[
    str | None,
    Field(description="The server of this worker handle; only needed for a handle this process did not receive."),
]

NEXT_STEP = {
    "spawn": "run a sub-agent with this worker_handle: it calls mse_worker_fetch, does the work, then "
    "mse_worker_submit; afterwards call mse_ack with kind=spawn_ack",
    "ask": "answer the question with mse_ack kind=answer and value=<your answer>",
    "hook_before": "read payload.prompt and payload.context (what the step is about to do), then allow the "
    "spawn with mse_ack kind=hook_ack (ok=false with error=<why> refuses it)",
    "hook_after": "for your information only; no reply is expected",
    "cancel": "the step was cancelled or moved to another operator: stop working on it; no reply is expected",
}


async def call_server(what: str, call: Callable[[], Awaitable[T]]) -> T:
    """Run an `OperatorClient` call, turning its refusals into tool errors with hints."""
    try:
        return await call()
    except OperatorClientError as exc:
        if exc.status == 0:
            raise ToolFailure(
                "server-unreachable",
                f"{what}: {exc.message}",
                "start the server with `mse serve` (or point MSE_HTTP / the bind argument at it)",
            ) from None
        raise ToolFailure(f"http-{exc.status}", f"{what}: {exc.message}", STATUS_HINTS.get(exc.status)) from None


async def as_session(state: McpState, sid: str | None, what: str, call: Callable[[OperatorClient], Awaitable[T]]) -> T:
    """`call` with the joined session `sid` (or the only one); its refusals become tool errors."""
    client = session(state, sid)
    return await call_server(what, lambda: call(client))


def session(state: McpState, sid: str | None) -> OperatorClient:
    """The joined session `sid`, or the only one when `sid` is None."""
    if sid is not None:
        client = state.sessions.get(sid)
        if client is None:
            joined = ", ".join(state.sessions) or "none"
            raise ToolFailure(
                "unknown-session",
                f"this process has not joined as {sid} (joined: {joined})",
                "call mse_operator_join first and use the sid it returns",
            )
        return client
    if len(state.sessions) == 1:
        return next(iter(state.sessions.values()))
    if not state.sessions:
        raise ToolFailure(
            "no-session", "this process has not joined as an operator", 'call mse_operator_join {"desc": ...}'
        )
    raise ToolFailure(
        "ambiguous-session",
        f"this process holds {len(state.sessions)} sessions ({', '.join(state.sessions)})",
        "pass sid to say which one",
    )


def frame_answer(state: McpState, client: OperatorClient, frame: ServerFrame) -> dict[str, Any]:
    """What mse_pending_wait returns for one request; a spawn's worker route is remembered."""
    if isinstance(frame, SpawnFrame):
        assert client.sid is not None
        route = WorkerRoute(client.sid, client.base_url, frame)
        state.routes[frame.capability_token] = route
        if frame.worker_handle:
            state.routes[frame.worker_handle] = route
    elif isinstance(frame, CancelFrame):
        state.forget_routes(lambda route: route.spawn.req_id != frame.req_id)
    return {
        "timed_out": False,
        "req_id": frame.req_id,
        "type": frame.type,
        "payload": frame.to_json(),
        "next": NEXT_STEP[frame.type],
    }


def worker_server(state: McpState, handle: str, base_url: str | None) -> str:
    """The server a worker handle belongs to: as given, else recorded by mse_pending_wait, else the default."""
    if base_url:
        return server_url(base_url)
    route = state.routes.get(handle)
    return route.base_url if route is not None else state.default_server


def worker_target(state: McpState, handle: str, base_url: str | None, task_id: str | None) -> tuple[str, str]:
    """The server and step a worker handle belongs to: recorded by mse_pending_wait, or given."""
    route = state.routes.get(handle)
    if route is not None:
        return worker_server(state, handle, base_url), task_id or route.spawn.task_id
    if task_id is None:
        raise ToolFailure(
            "unknown-worker-handle",
            "this process has not received a spawn with that worker handle",
            "pass task_id (the spawn's task_id, ST-...) and base_url, or receive the spawn here with mse_pending_wait",
        )
    return server_url(base_url) if base_url else state.default_server, task_id


def add_operator_tools(box: ToolBox, state: McpState) -> None:
    async def mse_operator_join(
        desc: Annotated[
            str,
            Field(min_length=1, max_length=1000, description="Who you are and what you are driving (shown to others)."),
        ],
        capability_manifest: Annotated[
            dict[str, JsonValue] | None, Field(description="Free-form facts about what this operator can do.")
        ] = None,
        bind: Bind = None,
    ) -> dict[str, Any]:
        base = server_url(bind) if bind else state.default_server
        client = OperatorClient(base, desc=desc, capability_manifest=capability_manifest)
        try:
            await call_server(f"joining {base}", client.start)
        except BaseException:
            await client.aclose()
            raise
        assert client.sid is not None
        state.sessions[client.sid] = client
        return {
            "sid": client.sid,
            "server": base,
            "next": "start runs by id with swarm_run (they are pinned to this session), then loop "
            "mse_pending_wait -> work -> mse_ack",
        }

    box.add(
        ToolSpec(
            "mse_operator_join",
            mse_operator_join,
            """Join mse serve as an operator: the server then sends this session the steps of its runs'
operator agents (spawns), questions (ask) and gates (hook_before). Returns the session id (sid);
its token stays inside this process. Runs started by id with swarm_run from this process are
pinned to the session automatically. The session lives until mse_operator_leave.""",
            {"desc": "Claude in ~/work/notes: driving review-notes"},
            open_world=True,
        )
    )

    async def mse_operator_leave(sid: Sid) -> dict[str, Any]:
        client = session(state, sid)
        await call_server(f"leaving as {sid}", client.leave)
        del state.sessions[sid]
        state.forget_routes(lambda route: route.sid != sid)
        return {"left": True, "sid": sid}

    box.add(
        ToolSpec(
            "mse_operator_leave",
            mse_operator_leave,
            """End an operator session: the server deletes it and vacates every run seat it held
(waiting requests fail). Use it when you are done driving runs.""",
            {"sid": "S-0123456789abcdef"},
            destructive=True,
            open_world=True,
        )
    )

    async def mse_operator_list(
        sid: OptionalSid = None,
        limit: Annotated[
            int | None, Field(ge=1, le=200, description="At most this many sessions (default 50).")
        ] = None,
    ) -> dict[str, Any]:
        return await as_session(state, sid, "listing operators", lambda client: client.list_operators(limit))

    box.add(
        ToolSpec(
            "mse_operator_list",
            mse_operator_list,
            """The operators signed in to the server (sid, desc, connected, the runs they were seated
on), newest activity first. Use it to find who drives a run before a handover. Needs a joined
session (its token authenticates the read).""",
            {"limit": 20},
            read_only=True,
            open_world=True,
        )
    )

    async def mse_pending_wait(
        ctx: Context,
        sid: Sid,
        timeout_ms: Annotated[
            int, Field(ge=0, le=3_600_000, description="How long to wait for a request, in milliseconds.")
        ] = 30_000,
    ) -> dict[str, Any]:
        client = session(state, sid)
        deadline = time.monotonic() + timeout_ms / 1000
        waited = 0.0
        await ctx.report_progress(waited, timeout_ms / 1000, f"waiting for a request for {sid}")
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return {"timed_out": True, "next": "nothing arrived; call mse_pending_wait again to keep waiting"}
            try:
                frame = await client.next_request(min(remaining, HEARTBEAT_SECS))
            except OperatorClientError as exc:
                raise ToolFailure(
                    "session-gone",
                    f"operator session {sid} ended: {exc.message}",
                    "join again with mse_operator_join (the server deleted or expired the session)",
                ) from None
            if frame is not None:
                return frame_answer(state, client, frame)
            waited += HEARTBEAT_SECS
            await ctx.report_progress(waited, timeout_ms / 1000, f"waiting for a request for {sid}")

    box.add(
        ToolSpec(
            "mse_pending_wait",
            mse_pending_wait,
            """Wait for the next request the server sends this operator session and return it:
{timed_out: false, req_id, type, payload, next} or {timed_out: true}. Types: spawn (run a
sub-agent with payload.worker_handle, then mse_ack kind=spawn_ack), ask (mse_ack kind=answer),
hook_before (mse_ack kind=hook_ack), hook_after (information only), cancel (stop that work).
Long waits send progress notifications; cancelling the call stops the wait and loses nothing.""",
            {"sid": "S-0123456789abcdef", "timeout_ms": 30000},
            read_only=True,
            open_world=True,
        )
    )

    async def mse_ack(
        sid: Sid,
        req_id: Annotated[str, Field(min_length=1, description="The req_id of the request being answered.")],
        kind: Annotated[
            Literal["answer", "hook_ack", "spawn_ack", "spawn_halt"],
            Field(description="answer (an ask), hook_ack (a hook_before), spawn_ack / spawn_halt (a spawn)."),
        ],
        value: Annotated[
            JsonValue,
            Field(
                description="answer: the answer. spawn_ack: the step's value when no sub-agent submitted one. "
                "spawn_halt: a value kept with the halt."
            ),
        ] = None,
        ok: Annotated[
            bool, Field(description="hook_ack: false refuses the spawn. spawn_ack: false fails the step.")
        ] = True,
        error: Annotated[
            str | None, Field(description="Why (a refused hook, a failed spawn, the reason of a halt).")
        ] = None,
        stats: Annotated[
            dict[str, JsonValue] | None,
            Field(description="spawn_ack: worker stats {worker_kind, model, usage{...}, num_turns}."),
        ] = None,
    ) -> dict[str, Any]:
        replies: dict[str, Callable[[OperatorClient], Awaitable[None]]] = {
            "answer": lambda client: client.answer(req_id, value),
            "hook_ack": lambda client: client.hook_ack(req_id, ok, error),
            "spawn_ack": lambda client: client.spawn_ack(req_id, value, ok=ok, error=error, stats=stats),
            "spawn_halt": lambda client: client.spawn_halt(req_id, value, error),
        }
        client = session(state, sid)
        if not client.received(req_id):
            raise ToolFailure(
                "unknown-request",
                f"operator session {client.sid} has no request {req_id} to answer: it never arrived here, "
                "or the server cancelled it (the seat moved, the run ended)",
                "answer the req_id mse_pending_wait returned; a cancelled request needs no answer",
            )
        await call_server(f"sending {kind}", lambda: replies[kind](client))
        if kind in ("spawn_ack", "spawn_halt"):
            state.forget_routes(lambda route: route.spawn.req_id != req_id)
        return {"sent": True, "req_id": req_id, "kind": kind}

    box.add(
        ToolSpec(
            "mse_ack",
            mse_ack,
            """Reply to a request from mse_pending_wait. After a spawn's sub-agent submitted its result
(mse_worker_submit), send kind=spawn_ack (the submitted value is the step's result; value is
only used when nothing was submitted). spawn_halt stops the step in a controlled way. Answer an
ask with kind=answer and value; allow a hook_before with kind=hook_ack (ok=false refuses).""",
            {"sid": "S-0123456789abcdef", "req_id": "Q-0123456789abcdef", "kind": "spawn_ack"},
            open_world=True,
        )
    )

    async def mse_run_assignees(run_id: RunId, sid: OptionalSid = None) -> dict[str, Any]:
        return await as_session(state, sid, f"reading the seats of {run_id}", lambda client: client.assignees(run_id))

    box.add(
        ToolSpec(
            "mse_run_assignees",
            mse_run_assignees,
            """Who holds each operator seat of a run (vacant seats included), with the seat generation.""",
            {"run_id": "R-0123456789abcdef"},
            read_only=True,
            open_world=True,
        )
    )

    async def mse_run_handover(run_id: RunId, sid: OptionalSid = None) -> dict[str, Any]:
        return await as_session(state, sid, f"reading the handover of {run_id}", lambda client: client.handover(run_id))

    box.add(
        ToolSpec(
            "mse_run_handover",
            mse_run_handover,
            """Everything a new driver needs to take a run over, in one read: its seats and holders, the
requests nobody answered yet (with each step's material route and whether a result was already
submitted), and where its trace stands. Follow it with mse_run_acquire.""",
            {"run_id": "R-0123456789abcdef"},
            read_only=True,
            open_world=True,
        )
    )

    async def mse_run_material(
        run_id: RunId,
        step_id: Annotated[str, Field(pattern=r"^ST-\S+$", description="The step (ST-...) whose material to read.")],
        sid: OptionalSid = None,
    ) -> dict[str, Any]:
        return await as_session(state, sid, f"reading step {step_id}", lambda client: client.material(run_id, step_id))

    box.add(
        ToolSpec(
            "mse_run_material",
            mse_run_material,
            """What a step of a run was given to work on (the worker payload) and whether a result was
already submitted, e.g. to redo an unanswered spawn after a handover.""",
            {"run_id": "R-0123456789abcdef", "step_id": "ST-0123456789abcdef"},
            read_only=True,
            open_world=True,
        )
    )

    async def mse_run_acquire(
        run_id: RunId,
        desc: Annotated[str, Field(min_length=1, description="Why the seat is taken (one line, shown to others).")],
        op: Annotated[
            str | None,
            Field(pattern=r"^S-\S+$", description="The session that takes the seat; default: this process's only one."),
        ] = None,
        slot: Annotated[
            str | None, Field(description="Which seat, when the Blueprint declares several operators.")
        ] = None,
        bind: Bind = None,
    ) -> dict[str, Any]:
        mine = state.sessions.get(op) if op is not None else session(state, None)
        target = op or (mine.sid if mine is not None else None)
        base = server_url(bind) if bind else (mine.base_url if mine is not None else state.default_server)
        body: dict[str, Any] = {"op": target, "desc": desc}
        if slot is not None:
            body["slot"] = slot
        answer: dict[str, Any] = await state.api(base).call(
            "POST", f"/v1/runs/{url_segment(run_id)}/acquire", json=body
        )
        return answer

    box.add(
        ToolSpec(
            "mse_run_acquire",
            mse_run_acquire,
            """Take an operator seat of a run (a handover) for `op` (default: your session): the run's next
requests for that seat go to it, and requests the previous holder had not answered are re-sent.
Never refused; the previous holder is returned.""",
            {"run_id": "R-0123456789abcdef", "desc": "taking over the review"},
            open_world=True,
        )
    )

    async def mse_worker_fetch(
        worker_handle: Handle,
        base_url: BaseUrl = None,
        task_id: Annotated[
            str | None, Field(pattern=r"^ST-\S+$", description="The spawn's task_id; only for a handle not seen here.")
        ] = None,
        system_ref_path: Annotated[
            str | None,
            Field(description="Write the system prompt to this file and return its path instead of the text."),
        ] = None,
    ) -> dict[str, Any]:
        base, step = worker_target(state, worker_handle, base_url, task_id)
        api = state.api(base)
        payload = await api.call("GET", "/v1/worker/prompt", params={"task_id": step}, bearer=worker_handle)
        if not isinstance(payload, dict):
            raise ToolFailure("bad-server-answer", "the worker prompt is not a JSON object")
        system = payload.get("system")
        if system_ref_path is not None and isinstance(system, str):
            path = Path(system_ref_path).expanduser()
            data = system.encode()
            try:
                path.write_bytes(data)
            except OSError as exc:
                raise ToolFailure(
                    "write-failed", f"cannot write {path}: {exc.strerror}", "choose a writable path"
                ) from None
            del payload["system"]
            payload["system_ref_resolution"] = {
                "ok": True,
                "path": str(path.resolve()),
                "sha256": hashlib.sha256(data).hexdigest(),
                "size_bytes": len(data),
            }
        payload["next"] = "do the work the prompt asks for, then mse_worker_submit with the result"
        return payload

    box.add(
        ToolSpec(
            "mse_worker_fetch",
            mse_worker_fetch,
            """As the sub-agent of a spawn: fetch the step's work, {task_id, attempt, agent, system?,
prompt, context}. `prompt` is the input, `system` the agent's instructions, context.steps the
outputs of earlier steps. Needs only the spawn's worker_handle when the spawn came through
mse_pending_wait in this process.""",
            {"worker_handle": "wh-0123456789abcdef"},
            read_only=True,
            open_world=True,
        )
    )

    async def mse_worker_submit(
        worker_handle: Handle,
        body: Annotated[
            JsonValue,
            Field(description="The result: text, or any JSON value (sent as JSON text; objects fold into ctx)."),
        ],
        base_url: BaseUrl = None,
        ok: Annotated[bool | None, Field(description="false: the attempt failed (the body says why).")] = None,
        verdict: Annotated[
            Literal["pass", "blocked", "skip"] | None, Field(description="The attempt's verdict (pass by default).")
        ] = None,
        name: Annotated[
            str | None,
            Field(
                min_length=1,
                description="Stage a named part instead of completing the attempt; the final submit folds "
                "parts into {out, parts}.",
            ),
        ] = None,
        degradations: Annotated[
            list[dict[str, JsonValue]] | None,
            Field(description="Tools that failed and what you did instead: [{tool, error, fallback, note?}]."),
        ] = None,
        stats: Annotated[
            dict[str, JsonValue] | None,
            Field(description="{worker_kind, model, usage{input_tokens, output_tokens, total_tokens}, num_turns}."),
        ] = None,
    ) -> dict[str, Any]:
        if name is not None and (ok is False or verdict is not None):
            raise ToolFailure(
                "invalid-arguments",
                "a named part (name) does not complete the attempt, so it takes no ok or verdict",
                "stage parts with name, then submit once without name (with ok / verdict there)",
            )
        api = state.api(worker_server(state, worker_handle, base_url))
        for entry in degradations or []:
            await api.call("POST", "/v1/worker/degradation", json=entry, bearer=worker_handle)
        if stats:
            await api.call("POST", "/v1/worker/stats", json=stats, bearer=worker_handle)
        text = body if isinstance(body, str) else compact(body)
        if name is not None:
            await api.call("POST", "/v1/worker/artifact", content=text, params={"name": name}, bearer=worker_handle)
            return {"staged": True, "name": name, "next": "stage more parts, or mse_worker_submit without name"}
        params = {"ok": None if ok is None else str(ok).lower(), "verdict": verdict}
        await api.call("POST", "/v1/worker/submit", content=text, params=params, bearer=worker_handle)
        return {"submitted": True, "next": "the driver now sends mse_ack kind=spawn_ack for this spawn"}

    box.add(
        ToolSpec(
            "mse_worker_submit",
            mse_worker_submit,
            """As the sub-agent of a spawn: submit the step's result (this completes the attempt; the
driver then sends mse_ack spawn_ack). With `name`, stage one named part without completing.
Degradations and stats, when given, are posted first. A result that breaks the step's verdict
contract or submit_format is refused with the reason; fix it and submit again.""",
            {"worker_handle": "wh-0123456789abcdef", "body": {"summary": "three findings"}},
            open_world=True,
        )
    )

    async def mse_doctor(bind: Bind = None) -> dict[str, Any]:
        base = server_url(bind) if bind else state.default_server
        report: dict[str, Any] = {
            "mse_mcp": {
                "version": package_version(),
                "server_url": base,
                "sessions": [
                    {"sid": sid, "server": client.base_url, "connected": client.connected}
                    for sid, client in state.sessions.items()
                ],
                "local_runs": {
                    run_id: "running" if run.task is not None and not run.task.done() else "ended"
                    for run_id, run in state.runs.items()
                },
                "pending_worker_routes": len({route.spawn.req_id for route in state.routes.values()}),
            }
        }
        try:
            doctor = await state.api(base).call("GET", "/v1/doctor")
        except ToolFailure as exc:
            report["server"] = {"reachable": False, "error": exc.message, "hint": exc.hint}
            report["version_drift"] = {"mse_mcp": package_version(), "mlua_swarm_server": None, "drift": None}
            return report
        report["server"] = {"reachable": True, **doctor}
        server_version = doctor.get("server_version") if isinstance(doctor, dict) else None
        report["version_drift"] = {
            "mse_mcp": package_version(),
            "mlua_swarm_server": server_version,
            "drift": None if server_version is None else server_version != package_version(),
        }
        return report

    box.add(
        ToolSpec(
            "mse_doctor",
            mse_doctor,
            """Health of this MCP process and of mse serve: this process's version, joined sessions,
local runs, and the server's own report (version, store, registered Blueprint ids), with
version_drift between the two. A server that cannot be reached is reported, not an error.""",
            {},
            read_only=True,
            open_world=True,
        )
    )


__all__ = ["add_operator_tools"]
