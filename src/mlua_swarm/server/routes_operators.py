"""Operator routes: join/list/read/leave sessions, the operator WebSocket, and the seat reads of a run.

`POST /v1/operators` never refuses; the other session routes take the session's own bearer, and the
seat reads (`assignees`, `handover`, `material`) take any live session's bearer. `acquire` needs
none (as upstream), the admin token aside.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from ..blueprint.compiler import CompiledBlueprint
from ..ids import RunId, StepId
from ..jsontext import JsonValueError, check_value
from ..middleware.join import last_final
from ..operator.hub import Connection, OperatorError, OperatorHub, OperatorSession, RunBrief
from ..operator.kinds import BadOperatorRequest, RunOperatorSettings, operator_request
from ..store.errors import RunNotFound
from .auth import bearer_of
from .errors import ApiError
from .http import json_object, no_content, ok, parse_id, path_param, query_int, server
from .state import ServerState

LIST_LIMIT_DEFAULT = 50
LIST_LIMIT_MAX = 200
JOIN_DESC_CHARS = 4096
JOIN_MANIFEST_BYTES = 64 * 1024
"""What a join may make the server keep per session: anyone may join, so each is bounded."""
_JOIN_HINT = {
    "hint": f"send at most {JOIN_DESC_CHARS} characters of desc and {JOIN_MANIFEST_BYTES} of capability_manifest JSON"
}


def _hub(request: Request | WebSocket) -> OperatorHub:
    hub = request.app.state.server.operators
    if not isinstance(hub, OperatorHub):
        raise ApiError(503, "this server has no operator hub")
    return hub


def _api(exc: OperatorError) -> ApiError:
    hint = None
    if exc.status == 401:
        hint = "present the token POST /v1/operators returned: Authorization: Bearer <token>"
    return ApiError(exc.status, str(exc), {"hint": hint} if hint else None)


async def _own(request: Request, hub: OperatorHub) -> OperatorSession:
    bearer = bearer_of(request)
    if bearer is None:
        raise ApiError(401, "this route needs the session's bearer", {"hint": "Authorization: Bearer <token>"})
    try:
        return await hub.session(request.path_params["sid"], bearer)
    except OperatorError as exc:
        raise _api(exc) from None


async def _any(request: Request, hub: OperatorHub) -> OperatorSession:
    try:
        return await hub.authenticate(bearer_of(request))
    except OperatorError as exc:
        raise _api(exc) from None


@dataclass(frozen=True, slots=True)
class LaunchPin:
    """A launch's `operator_sid` / `operator_desc` / `operator_slot`: who holds the new run's seats."""

    sid: str
    desc: str
    slot: str | None


def launch_pin(state: ServerState, body: Mapping[str, Any]) -> LaunchPin | None:
    """The pin a launch body asks for (None without `operator_sid`); malformed fields are a 400."""
    sid, desc, slot = body.get("operator_sid"), body.get("operator_desc"), body.get("operator_slot")
    if sid is None:
        return None
    if state.operators is None:
        raise ApiError(503, "no operator hub on this server; launch without operator_sid")
    if not isinstance(sid, str) or not sid:
        raise ApiError(400, "operator_sid must be a session id (S-…) from POST /v1/operators")
    if not isinstance(desc, str) or not desc.strip():
        raise ApiError(400, "operator_desc is required (non-blank) with operator_sid: say who holds the seat")
    if slot is not None and not isinstance(slot, str):
        raise ApiError(400, "operator_slot must be the name of one of the Blueprint's operators[]")
    return LaunchPin(sid, desc, slot)


def launch_operator(body: Mapping[str, Any]) -> dict[str, Any] | None:
    """The launch's `operator` object `{kind?, id?, per_agent_kinds?}`, checked (a 400 when malformed)."""
    try:
        return operator_request(body.get("operator"))
    except BadOperatorRequest as exc:
        raise ApiError(400, str(exc), {"hint": "kinds are main_ai, automate or composite"}) from None


async def seat_run(
    state: ServerState,
    run_id: RunId,
    compiled: CompiledBlueprint,
    pin: LaunchPin | None,
    operator: Mapping[str, Any] | None = None,
    brief: RunBrief | None = None,
) -> None:
    """Before a run starts: set its operator kinds and id (`operator.kinds`), declare its Blueprint's
    seats (vacant) and give them to the pinned session; `brief` is what the seats' holders are told
    about the run (their `observed` entries)."""
    hub = state.operators
    if hub is not None:
        hub.configure(run_id, RunOperatorSettings.of(compiled.raw, operator))
    declared = [str(op["name"]) for op in compiled.raw.get("operators") or () if isinstance(op, Mapping)]
    if hub is None or (not declared and pin is None):
        return
    try:
        if pin is None:
            await hub.declare(run_id, declared, brief)
        else:
            await hub.pin(run_id, pin.sid, pin.desc, pin.slot, declared, brief)
    except OperatorError as exc:
        hub.seats.pop(run_id, None)
        raise ApiError(400, str(exc), {"hint": "join with POST /v1/operators and name one declared seat"}) from None


async def join(request: Request) -> Response:
    hub = _hub(request)
    body = await json_object(request, required=False)
    desc, manifest = body.get("desc"), body.get("capability_manifest")
    if desc is not None and not isinstance(desc, str):
        raise ApiError(400, "desc must be a string")
    if desc is not None and len(desc) > JOIN_DESC_CHARS:
        raise ApiError(400, f"desc holds {len(desc)} characters, more than {JOIN_DESC_CHARS}", _JOIN_HINT)
    try:
        check_value(manifest, JOIN_MANIFEST_BYTES)
    except JsonValueError as exc:
        raise ApiError(400, f"capability_manifest: {exc}", _JOIN_HINT) from None
    try:
        session, token = await hub.join(desc, manifest)
    except OperatorError as exc:
        hint = "a session no longer needed is released with DELETE /v1/operators/{sid}; or raise max_operator_sessions"
        raise ApiError(exc.status, str(exc), {"hint": hint}) from None
    return ok({"sid": session.sid, "token": token})


async def list_operators(request: Request) -> Response:
    hub = _hub(request)
    await _any(request, hub)
    limit = min(query_int(request, "limit", LIST_LIMIT_DEFAULT, minimum=1) or LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX)
    await hub.sweep()
    sessions = hub.list_sessions(limit)
    return ok({"operators": [s.summary() for s in sessions], "total": len(hub.sessions), "limit": limit})


async def read_operator(request: Request) -> Response:
    hub = _hub(request)
    session = await _own(request, hub)
    body = session.summary()
    body["capability_manifest"] = session.capability_manifest
    return ok(body)


async def delete_operator(request: Request) -> Response:
    hub = _hub(request)
    session = await _own(request, hub)
    await hub.teardown(session.sid, "deleted by its owner")
    return no_content()


async def operator_socket(websocket: WebSocket) -> None:
    hub = _hub(websocket)
    bearer = bearer_of(websocket.scope["headers"]) or websocket.query_params.get("token")
    try:
        if bearer is None:
            raise OperatorError("this socket needs the session's bearer (Authorization: Bearer <token>)")
        session = await hub.session(websocket.path_params["sid"], bearer)
    except OperatorError as exc:
        status = 401 if exc.status == 400 else exc.status
        await websocket.send_denial_response(JSONResponse({"error": str(exc)}, status_code=status))
        return
    await websocket.accept()
    conn = hub.attach(session)
    writer = asyncio.create_task(_write(websocket, conn))
    keepalive = asyncio.create_task(hub.keepalive(conn))
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            data = message.get("text") or message.get("bytes")
            if data:
                hub.receive(conn, data)
    except WebSocketDisconnect:
        pass
    finally:
        hub.detach(conn)
        keepalive.cancel()
        conn.close(1000, "socket ended")
        with contextlib.suppress(Exception):
            await writer


async def _write(websocket: WebSocket, conn: Connection) -> None:
    while True:
        text = await conn.outbox.get()
        if text is None:
            code, reason = conn.close_reason or (1000, "")
            with contextlib.suppress(Exception):
                await websocket.close(code, reason)
            return
        await websocket.send_text(text)


async def _known_run(request: Request, hub: OperatorHub) -> RunId:
    run_id = parse_id(RunId, path_param(request, "run_id"))
    if run_id in hub.seats:
        return run_id
    try:
        await server(request).store.get_run(run_id, with_result=False)
    except RunNotFound:
        raise ApiError(404, f"run {run_id} not found") from None
    return run_id


async def acquire(request: Request) -> Response:
    hub = _hub(request)
    run_id = await _known_run(request, hub)
    body = await json_object(request, required=False)
    op, desc, slot = body.get("op"), body.get("desc"), body.get("slot")
    if not isinstance(op, str) or not op.strip() or not isinstance(desc, str) or not desc.strip():
        raise ApiError(400, "acquire needs non-empty op (a session id) and desc")
    if slot is not None and not isinstance(slot, str):
        raise ApiError(400, "slot must be a string")
    try:
        result = await hub.acquire(run_id, op, desc, slot)
    except OperatorError as exc:
        raise ApiError(400 if exc.status == 404 else exc.status, str(exc)) from None
    return ok(result)


async def assignees(request: Request) -> Response:
    hub = _hub(request)
    await _any(request, hub)
    run_id = await _known_run(request, hub)
    return ok(hub.assignees(run_id, await hub.seats_of(run_id)))


async def handover(request: Request) -> Response:
    hub = _hub(request)
    await _any(request, hub)
    run_id = await _known_run(request, hub)
    seats = hub.assignees(run_id, await hub.seats_of(run_id))
    unanswered = []
    for pending in hub.pending_for_run(run_id):
        row = pending.to_json()
        row["material_route"] = f"/v1/runs/{run_id}/material?step_id={pending.step_id}"
        unanswered.append(row)
    unread = [
        {"slot": row["slot"], "op": row["holder"]["op"], "reason": "holder is not connected"}
        for row in seats["seats"]
        if row["holder"] is not None
        and (session := hub.sessions.get(row["holder"]["op"])) is not None
        and not session.connected
    ]
    return ok(
        {
            **seats,
            "trace": {"route": f"/v1/runs/{run_id}/trace"},
            "unanswered": unanswered,
            "unread_seats": unread,
        }
    )


async def material(request: Request) -> Response:
    hub = _hub(request)
    await _any(request, hub)
    run_id = await _known_run(request, hub)
    step_id = request.query_params.get("step_id")
    if not step_id:
        raise ApiError(400, "material needs ?step_id=ST-…")
    pending = next((p for p in hub.pending_for_run(run_id) if p.step_id == step_id and p.token is not None), None)
    if pending is None or pending.token is None:
        raise ApiError(404, f"step {step_id} of run {run_id} is not waiting on an operator")
    engine = server(request).engine
    step = StepId.parse(pending.step_id)
    payload = await engine.fetch_worker_payload(pending.token, step)
    final = last_final(engine.output_tail(step, pending.attempt or 0))
    return ok(
        {
            "run_id": run_id,
            "run_link": "confirmed",
            "note": "the value of a submitted Final is left out; read the step once it is done",
            "payload": payload,
            "final_present": final is not None,
            "final_ok": None if final is None else final.ok,
        }
    )


def routes() -> list[BaseRoute]:
    return [
        Route("/v1/operators", join, methods=["POST"]),
        Route("/v1/operators", list_operators, methods=["GET"]),
        Route("/v1/operators/{sid}", read_operator, methods=["GET"]),
        Route("/v1/operators/{sid}", delete_operator, methods=["DELETE"]),
        WebSocketRoute("/v1/operators/{sid}/ws", operator_socket),
        Route("/v1/runs/{run_id}/acquire", acquire, methods=["POST"]),
        Route("/v1/runs/{run_id}/assignees", assignees, methods=["GET"]),
        Route("/v1/runs/{run_id}/handover", handover, methods=["GET"]),
        Route("/v1/runs/{run_id}/material", material, methods=["GET"]),
    ]


__all__ = ["LaunchPin", "launch_pin", "routes", "seat_run"]
