"""`GET /openapi.json`: an OpenAPI 3.1 description of every `/v1` route the app serves.

The paths and methods come from the app's own routing table, so a route added by any module is
described (with its docstring's first line when this module has no summary for it); summaries,
query parameters, bodies and credentials of the core routes are written out here.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, WebSocketRoute

from .. import __version__
from .http import ok, server

API_PREFIX = "/v1/"
_PARAM = re.compile(r"{(\w+)}")

Q = tuple[str, str, str]
"""A query parameter: name, JSON type, description."""

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}, "details": {}},
}
OBJECT: dict[str, Any] = {"type": "object"}

LAUNCH_BODY: dict[str, Any] = {
    "type": "object",
    "required": ["blueprint"],
    "properties": {
        "blueprint": {
            "description": "{kind: inline, value: {...}} or {kind: id, id, version?: {kind: latest|fixed|semver_req}}",
            "type": "object",
        },
        "init_ctx": {"description": "the flow's initial ctx"},
        "detach": {"type": "boolean", "description": "answer 202 at once instead of waiting for the end"},
        "goal": {"type": "string"},
        "ttl_secs": {"type": "number", "description": "ceiling of the run (request > Blueprint > server)"},
        "timeout_secs": {"type": "number", "description": "wait limit of a sync launch (504 past it)"},
        "project_root": {"type": "string"},
        "base_dir": {"type": "string", "description": "where relative references resolve (else project_root)"},
        "work_dir": {"type": "string"},
        "task_metadata": {},
        "check_policy": {"enum": ["silent", "warn", "strict"]},
        "operator_sid": {"type": "string", "description": "pin the run's operator seats to this session (S-…)"},
        "operator_desc": {"type": "string", "description": "why the pinned session holds them (with operator_sid)"},
        "operator_slot": {"type": "string", "description": "the seat the pin fills, when the Blueprint has several"},
        "operator": {
            "type": "object",
            "description": "operator kinds (main_ai hooks or not) and the id of the run's operator steps",
            "properties": {
                "kind": {"enum": ["main_ai", "automate", "composite"]},
                "id": {"type": "string"},
                "per_agent_kinds": {
                    "type": "object",
                    "additionalProperties": {"enum": ["main_ai", "automate", "composite"]},
                },
            },
        },
    },
}

WORKER = "worker"
ADMIN = "admin"
OPERATOR = "operator"

# (method, path) → summary, query parameters, request body schema, credential
SPECS: dict[tuple[str, str], tuple[str, tuple[Q, ...], dict[str, Any] | None, str | None]] = {
    ("GET", "/v1/healthz"): ("Liveness: `ok` as text", (), None, None),
    ("GET", "/v1/status"): ("Version, uptime, live runs, store", (), None, None),
    ("GET", "/v1/doctor"): ("Self-checks of the store and the engine", (), None, None),
    ("GET", "/v1/blueprints"): ("Registered Blueprints", (), None, None),
    ("POST", "/v1/blueprints/{id}"): (
        "Register a Blueprint version (201 new, 200 `seeded` when the content is known)",
        (),
        OBJECT,
        ADMIN,
    ),
    ("DELETE", "/v1/blueprints/{id}"): ("Archive a Blueprint", (), None, ADMIN),
    ("GET", "/v1/blueprints/{id}/head"): ("The latest version of a Blueprint", (), None, None),
    ("GET", "/v1/blueprints/{id}/history"): ("Every version of a Blueprint", (), None, None),
    ("POST", "/v1/blueprints/{id}/unarchive"): ("Take a Blueprint out of the archive", (), None, ADMIN),
    ("POST", "/v1/tasks"): ("Launch a run: sync (200, 504 past the wait) or `detach` (202)", (), LAUNCH_BODY, ADMIN),
    ("GET", "/v1/tasks"): ("Tasks, newest first", (("limit", "integer", "at most this many"),), None, None),
    ("GET", "/v1/tasks/{id}"): ("A task and its runs", (), None, None),
    ("POST", "/v1/tasks/{id}/runs"): (
        "Re-kick a task: ctx = Blueprint default < task input < `init_ctx_override`",
        (),
        OBJECT,
        ADMIN,
    ),
    ("GET", "/v1/tasks/{id}/runs/{run}/steps"): (
        "Step contents of a task's run (`latest` or a run id)",
        (),
        None,
        None,
    ),
    ("GET", "/v1/tasks/{id}/runs/{run}/steps/{step}"): (
        "One step's content summary",
        (("path", "string", "a JSON path into the value"),),
        None,
        None,
    ),
    ("GET", "/v1/tasks/{id}/runs/{run}/steps/{step}/content"): (
        "One step's value as JSON (ETag, If-None-Match → 304)",
        (("path", "string", "a JSON path into the value"),),
        None,
        None,
    ),
    ("GET", "/v1/runs"): (
        "Runs, newest first",
        (
            ("status", "string", "comma-separated statuses"),
            ("task_id", "string", "only this task's runs"),
            ("limit", "integer", "page size"),
            ("offset", "integer", "skip this many"),
        ),
        None,
        None,
    ),
    ("GET", "/v1/runs/{id}"): ("A run with its step entries", (), None, None),
    ("DELETE", "/v1/runs/{id}"): ("Delete a run that is not running (409 while it runs)", (), None, ADMIN),
    ("GET", "/v1/runs/{id}/steps"): ("A run's step entries", (), None, None),
    ("GET", "/v1/runs/{id}/trace"): (
        "A run's trace events, ascending",
        (
            ("after", "integer", "only events with a greater seq"),
            ("limit", "integer", "at most this many"),
            ("latest", "integer", "the last N (wins over after)"),
            ("kind", "string", "comma-separated kind prefixes"),
            ("step", "string", "only this step"),
            ("attempt", "integer", "only this attempt"),
        ),
        None,
        None,
    ),
    ("POST", "/v1/runs/{id}/cancel"): ("Cancel a run for real: workers cancelled, children killed", (), None, ADMIN),
    ("POST", "/v1/runs/{id}/resume"): (
        "Resume an interrupted run, replaying its finished steps (202)",
        (),
        None,
        ADMIN,
    ),
    ("POST", "/v1/runs/{id}/rerun-from"): ("Run a run again from one step on (202)", (), OBJECT, ADMIN),
    ("GET", "/v1/runs/{id}/events"): (
        "The run's events as Server-Sent Events; `id:` is the seq (send Last-Event-ID to resume)",
        (
            ("after", "integer", "start after this seq (like Last-Event-ID)"),
            ("kind", "string", "comma-separated kind prefixes"),
            ("step", "string", "only this step"),
            ("attempt", "integer", "only this attempt"),
        ),
        None,
        None,
    ),
    ("GET", "/v1/worker/prompt"): ("The attempt's prompt", (), None, WORKER),
    ("GET", "/v1/worker/prompt/system"): ("The attempt's system prompt", (), None, WORKER),
    ("POST", "/v1/worker/submit"): (
        "Complete the attempt: body (text or JSON), `ok`, `verdict=pass|blocked|skip` (410 once the run ended)",
        (
            ("ok", "boolean", "the attempt succeeded"),
            ("verdict", "string", "pass, blocked or skip"),
            ("submit_format", "string", "text or json"),
        ),
        None,
        WORKER,
    ),
    ("POST", "/v1/worker/artifact"): (
        "Add a named part to the step's value",
        (("name", "string", "part name"),),
        None,
        WORKER,
    ),
    ("POST", "/v1/worker/result"): ("The older JSON route: `{task_id, value, ok, attempt?}`", (), OBJECT, WORKER),
    ("POST", "/v1/worker/stats"): ("Usage statistics of the attempt", (), OBJECT, WORKER),
    ("POST", "/v1/worker/degradation"): ("Report a degraded attempt", (), OBJECT, WORKER),
    ("POST", "/v1/data/emit"): ("Put a value on the run's data plane", (), OBJECT, WORKER),
    ("POST", "/v1/data/{name}"): ("Put a named value on the run's data plane", (), None, WORKER),
    ("GET", "/v1/data/{key}"): ("Read a value of the run's data plane", (), None, WORKER),
    ("POST", "/v1/operators"): ("Open an operator session; answers its sid and bearer token", (), OBJECT, None),
    ("GET", "/v1/operators"): ("Operator sessions", (), None, None),
    ("GET", "/v1/operators/{sid}"): ("One operator session", (), None, None),
    ("DELETE", "/v1/operators/{sid}"): ("Close an operator session", (), None, OPERATOR),
}

SECURITY_SCHEMES = {
    ADMIN: {
        "type": "http",
        "scheme": "bearer",
        "description": "the server's admin token; needed only when one is configured (always off loopback)",
    },
    WORKER: {
        "type": "http",
        "scheme": "bearer",
        "description": "a worker's `wh-` handle or full token (MSE_WORKER_HANDLE / MSE_TOKEN of the child)",
    },
    OPERATOR: {"type": "http", "scheme": "bearer", "description": "an operator session's token"},
}


def _summary(route: Route | WebSocketRoute) -> str:
    doc = inspect.getdoc(route.endpoint) or ""
    return doc.splitlines()[0] if doc else route.name.replace("_", " ")


def _responses(credential: str | None) -> dict[str, Any]:
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    responses: dict[str, Any] = {
        "200": {"description": "success"},
        "400": {"description": "bad request", **error},
        "404": {"description": "not found", **error},
        "413": {"description": "body over the limit", **error},
    }
    if credential is not None:
        responses["401"] = {"description": "missing, forged or expired credential", **error}
    if credential == WORKER:
        responses["403"] = {"description": "a credential of another step", **error}
        responses["410"] = {"description": "the run has ended", **error}
        responses["413"] = {"description": "body over the limit, or the attempt's output past its budget", **error}
    return responses


def _operation(method: str, path: str, route: Route | WebSocketRoute) -> dict[str, Any]:
    summary, query, body, credential = SPECS.get((method, path), (_summary(route), (), None, None))
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}} for name in _PARAM.findall(path)
    ]
    params += [{"name": n, "in": "query", "schema": {"type": t}, "description": d} for n, t, d in query]
    operation: dict[str, Any] = {
        "summary": summary,
        "operationId": f"{method.lower()}_{route.name}_{len(path)}",
        "parameters": params,
        "responses": _responses(credential),
    }
    if body is not None:
        operation["requestBody"] = {"content": {"application/json": {"schema": body}}}
    if credential is not None:
        operation["security"] = [{credential: []}]
    if isinstance(route, WebSocketRoute):
        operation["summary"] = f"WebSocket: {summary}"
        operation["responses"] = {"101": {"description": "switching protocols"}}
    return operation


def describe(routes: list[BaseRoute], *, version: str, server_url: str = "") -> dict[str, Any]:
    """The OpenAPI document of the `/v1` routes among `routes`."""
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        if not isinstance(route, Route | WebSocketRoute) or not route.path.startswith(API_PREFIX):
            continue
        methods = ["GET"] if isinstance(route, WebSocketRoute) else sorted((route.methods or set()) - {"HEAD"})
        for method in methods:
            paths.setdefault(route.path, {})[method.lower()] = _operation(method, route.path, route)
    paths["/openapi.json"] = {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI"}}}}
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "mlua-swarm server", "version": version},
        "paths": dict(sorted(paths.items())),
        "components": {"schemas": {"Error": ERROR_SCHEMA}, "securitySchemes": SECURITY_SCHEMES},
    }
    if server_url:
        document["servers"] = [{"url": server_url}]
    return document


async def openapi(request: Request) -> Response:
    return ok(describe(request.app.routes, version=__version__, server_url=server(request).base_url))


def routes() -> list[BaseRoute]:
    return [Route("/openapi.json", openapi, methods=["GET"])]


__all__ = ["describe", "routes"]
