"""The dashboard's pages, its JSON reads and its actions, as Starlette routes.

Pages are rendered on the server (Jinja2) with their first data embedded, so they draw at once; small
browser modules under `static/` keep them live. Reads come straight from the store. Actions (cancel,
resume, rerun-from, launch, the operator console) are plain forms or `fetch` calls with a CSRF token,
and are carried out by calling the server's own `/v1` routes in-process, so the dashboard does exactly
what the API does.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from ...ids import RunId
from ...jsontext import loads_strict
from ...store.base import Store
from ...store.errors import RecordNotFound
from ...store.records import RunRecord, RunStatus
from ..http import json_object, query_int, server
from .auth import ADMIN_COOKIE, CSRF_FIELD, CSRF_HEADER, SEED_COOKIE, Guard, secure_cookie
from .console import Console
from .views import (
    BlueprintNames,
    blueprint_diff,
    launch_of,
    operator_waits,
    pretty,
    run_record,
    run_row,
    step_rows,
    trace_rows,
)

HERE = Path(__file__).parent
DASHBOARD_PREFIX = "/ui/"
"""Every mutating dashboard route lives under this prefix; they check the sign-in cookie and a CSRF token
themselves, so the server's admin-token gate (which wants a bearer header) lets them through."""
RUNS_LIMIT = 200
TRACE_PAGE = 500

Handler = Callable[[Request], Awaitable[Response]]


class Dashboard:
    """The dashboard of one server process; it reaches the server's state as `request.app.state.server`."""

    def __init__(self) -> None:
        self.guard = Guard(lambda request: server(request).config.admin_token)
        self.console = Console(self)
        self.names = BlueprintNames()
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        self.templates.env.globals["static"] = _static_url
        self.templates.env.policies["json.dumps_function"] = _dumps

    @staticmethod
    def store(request: Request) -> Store:
        return server(request).store

    # -- plumbing ---------------------------------------------------------------------------------

    def page(self, request: Request, template: str, title: str, **context: Any) -> Response:
        seed, fresh = self.guard.seed(request)
        context.update(
            title=title,
            csrf=self.guard.csrf_token(seed),
            csrf_field=CSRF_FIELD,
            nav=template.split(".")[0],
            signed_in_required=self.guard.required(request),
        )
        response = self.templates.TemplateResponse(request, template, context)
        if fresh:
            secure_cookie(response, request, SEED_COOKIE, seed)
        return response

    def gated(self, handler: Handler, *, mutating: bool = False, api: bool = False, public: bool = False) -> Handler:
        """Wrap a handler with the sign-in check (unless `public`) and, for mutating ones, the CSRF check."""

        async def run(request: Request) -> Response:
            if not public and not self.guard.signed_in(request):
                if api:
                    return JSONResponse({"error": "sign in to the dashboard first"}, status_code=401)
                return RedirectResponse(f"/ui/login?{urlencode({'next': request.url.path})}", status_code=303)
            if mutating:
                supplied = request.headers.get(CSRF_HEADER)
                if supplied is None and not api:
                    form = await request.form()
                    value = form.get(CSRF_FIELD)
                    supplied = value if isinstance(value, str) else None
                if not self.guard.csrf_ok(request, supplied):
                    return JSONResponse({"error": "missing or wrong CSRF token; reload the page"}, status_code=403)
            return await handler(request)

        return run

    async def call(self, request: Request, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """Call one of the server's own `/v1` routes in-process, as the admin; returns (status, JSON body)."""
        headers = {}
        token = self.guard.admin_token(request)
        if token:
            headers["authorization"] = f"Bearer {token}"
        transport = httpx.ASGITransport(app=request.app, client=("127.0.0.1", 0))
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            response = await client.request(method, path, json=body, headers=headers)
        try:
            data = response.json() if response.content else None
        except ValueError:
            data = {"error": response.text}
        return response.status_code, data

    async def _run(self, request: Request, run_id: str) -> RunRecord | None:
        try:
            return await self.store(request).get_run(RunId.parse(run_id))
        except (ValueError, RecordNotFound):
            return None

    async def _rows(
        self, request: Request, status: str | None, blueprint: str | None, limit: int
    ) -> list[dict[str, Any]]:
        statuses = None
        if status:
            statuses = [RunStatus(s) for s in status.split(",") if s in RunStatus.__members__.values()]
        runs = await self.store(request).list_runs(status=statuses, limit=None if blueprint else limit)
        now = time.time()
        rows = []
        for run in runs:
            name = self.names.of(run)
            if blueprint and name != blueprint:
                continue
            try:
                task = await self.store(request).get_task(run.task_id)
            except RecordNotFound:
                task = None
            rows.append(run_row(run, task, name, now))
            if len(rows) >= limit:
                break
        return rows

    async def run_view(self, request: Request, run: RunRecord) -> dict[str, Any]:
        """Everything the run page draws: the record, the flow IR, steps with values, the trace's tail."""
        launch = launch_of(run)
        try:
            task = await self.store(request).get_task(run.task_id)
        except RecordNotFound:
            task = None
        entries = await self.store(request).list_steps(run.run_id)
        replay = await self.store(request).list_replay(run.run_id)
        trace = await self.store(request).list_trace(run.run_id)
        return {
            "run": {**run_record(run), "blueprint": self.names.of(run), "goal": task.goal if task else ""},
            "init": launch.init,
            "flow": launch.flow,
            "verdicts": launch.verdicts,
            "steps": step_rows(entries, replay),
            "trace": trace_rows(trace[-TRACE_PAGE:]),
            "waiting": operator_waits(server(request).operators, str(run.run_id)),
            "now": time.time(),
        }

    # -- pages ------------------------------------------------------------------------------------

    async def runs_page(self, request: Request) -> Response:
        status = request.query_params.get("status") or None
        blueprint = request.query_params.get("blueprint") or None
        rows = await self._rows(request, status, blueprint, RUNS_LIMIT)
        names = sorted({v.name for v in await self.store(request).list_blueprints()})
        data = {"runs": rows, "status": status, "blueprint": blueprint, "now": time.time()}
        return self.page(
            request,
            "runs.html",
            "Runs",
            data=data,
            statuses=[s.value for s in RunStatus],
            blueprints=names,
            status=status,
            blueprint=blueprint,
        )

    async def run_page(self, request: Request) -> Response:
        run = await self._run(request, request.path_params["run_id"])
        if run is None:
            return self.page(request, "missing.html", "Not found", what=f"run {request.path_params['run_id']}")
        view = await self.run_view(request, run)
        refs = _step_refs(view["flow"])
        return self.page(request, "run.html", f"Run {run.run_id}", data=view, run=view["run"], refs=refs)

    async def blueprints_page(self, request: Request) -> Response:
        latest = await self.store(request).list_blueprints()
        rows = []
        for version in sorted(latest, key=lambda v: v.name):
            doc = version.document if isinstance(version.document, Mapping) else {}
            description = ((doc.get("metadata") or {}).get("description")) or ""
            rows.append({**version.to_json(), "agents": len(doc.get("agents") or []), "description": description})
        return self.page(request, "blueprints.html", "Blueprints", rows=rows)

    async def blueprint_page(self, request: Request) -> Response:
        name = request.path_params["name"]
        history = await self.store(request).blueprint_history(name)
        if not history:
            return self.page(request, "missing.html", "Not found", what=f"Blueprint {name}")
        q = request.query_params

        def pick(selector: str | None, default: Any) -> Any:
            if not selector:
                return default
            hits = [v for v in history if v.content_hash.startswith(selector)]
            return hits[-1] if hits else default

        shown = pick(q.get("v"), history[-1])
        old = pick(q.get("a"), history[-2] if len(history) > 1 else history[-1])
        new = pick(q.get("b"), history[-1])
        diff = blueprint_diff(old.document, new.document) if q.get("a") or q.get("b") or len(history) > 1 else None
        default_init = shown.document.get("default_init_ctx") if isinstance(shown.document, Mapping) else None
        return self.page(
            request,
            "blueprint.html",
            f"Blueprint {name}",
            name=name,
            history=[v.to_json() for v in reversed(history)],
            shown=shown.to_json(),
            source=pretty(shown.document),
            old=old.to_json(),
            new=new.to_json(),
            diff=diff,
            init_text=pretty(default_init if default_init is not None else {}),
            error=q.get("error"),
        )

    async def operator_page(self, request: Request) -> Response:
        session = self.console.session_for(request)
        return self.page(
            request,
            "operator.html",
            "Operator console",
            session=session,
            run_id=request.query_params.get("run", ""),
            available=server(request).operators is not None,
        )

    async def login_page(self, request: Request) -> Response:
        return self.page(request, "login.html", "Sign in", next=request.query_params.get("next", "/"), error=None)

    async def login(self, request: Request) -> Response:
        form = await request.form()
        token = form.get("token")
        target = form.get("next")
        target = target if isinstance(target, str) and target.startswith("/") and not target.startswith("//") else "/"
        if not self.guard.required(request):
            return RedirectResponse(target, status_code=303)
        throttle = server(request).login_throttle
        client = request.client.host if request.client else ""
        wait = math.ceil(throttle.retry_after(client))
        if wait:
            error = f"Too many failed sign-ins from your address: try again in {wait} s."
            response = self.page(request, "login.html", "Sign in", next=target, error=error)
            response.status_code = 429
            response.headers["retry-after"] = str(wait)
            return response
        if not isinstance(token, str) or not self.guard.token_matches(request, token):
            throttle.failed(client)
            error = "That token is not the admin token."
            response = self.page(request, "login.html", "Sign in", next=target, error=error)
            response.status_code = 401
            return response
        throttle.succeeded(client)
        response = RedirectResponse(target, status_code=303)
        secure_cookie(response, request, ADMIN_COOKIE, token)
        return response

    async def logout(self, request: Request) -> Response:
        response = RedirectResponse("/ui/login", status_code=303)
        response.delete_cookie(ADMIN_COOKIE, path="/")
        return response

    # -- JSON reads ---------------------------------------------------------------------------------

    async def api_runs(self, request: Request) -> Response:
        q = request.query_params
        limit = min(query_int(request, "limit", RUNS_LIMIT) or RUNS_LIMIT, 1000)
        rows = await self._rows(request, q.get("status") or None, q.get("blueprint") or None, limit)
        return JSONResponse({"runs": rows, "now": time.time()})

    async def api_run(self, request: Request) -> Response:
        run = await self._run(request, request.path_params["run_id"])
        if run is None:
            return JSONResponse({"error": "no such run"}, status_code=404)
        return JSONResponse(await self.run_view(request, run))

    async def api_run_status(self, request: Request) -> Response:
        """The run's record, its steps from index `from`, and trace events after `after`: one live update."""
        run = await self._run(request, request.path_params["run_id"])
        if run is None:
            return JSONResponse({"error": "no such run"}, status_code=404)
        start = query_int(request, "from", 0) or 0
        after = query_int(request, "after", 0) or 0
        entries = await self.store(request).list_steps(run.run_id)
        replay = await self.store(request).list_replay(run.run_id) if len(entries) > start else []
        rows = step_rows(entries, replay, start) if len(entries) > start else []
        trace = await self.store(request).list_trace(run.run_id, after=after, limit=TRACE_PAGE)
        waiting = operator_waits(server(request).operators, str(run.run_id))
        return JSONResponse(
            {
                "run": run_record(run),
                "from": start,
                "steps": rows,
                "trace": trace_rows(trace),
                "waiting": waiting,
                "now": time.time(),
            }
        )

    # -- actions --------------------------------------------------------------------------------------

    async def _act(self, request: Request, path: str, body: Any = None) -> Response:
        status, data = await self.call(request, "POST", path, body)
        if request.headers.get(CSRF_HEADER) is not None:
            return JSONResponse(data if data is not None else {}, status_code=status)
        run_id = request.path_params.get("run_id", "")
        if status >= 400:
            message = data.get("error") if isinstance(data, Mapping) else str(data)
            return RedirectResponse(f"/runs/{run_id}?{urlencode({'error': message})}", status_code=303)
        return RedirectResponse(f"/runs/{run_id}", status_code=303)

    async def cancel(self, request: Request) -> Response:
        return await self._act(request, f"/v1/runs/{quote(request.path_params['run_id'])}/cancel")

    async def resume(self, request: Request) -> Response:
        return await self._act(request, f"/v1/runs/{quote(request.path_params['run_id'])}/resume")

    async def rerun_from(self, request: Request) -> Response:
        step = await _field(request, "from_step")
        path = f"/v1/runs/{quote(request.path_params['run_id'])}/rerun-from"
        return await self._act(request, path, {"from_step": step or ""})

    async def launch(self, request: Request) -> Response:
        name = request.path_params["name"]
        form = await request.form()
        init_text = str(form.get("init_ctx") or "{}")
        back = f"/blueprints/{quote(name)}"
        try:
            init_ctx = loads_strict(init_text)
        except ValueError as exc:
            return RedirectResponse(f"{back}?{urlencode({'error': f'init ctx is not JSON: {exc}'})}", status_code=303)
        body: dict[str, Any] = {"blueprint": {"kind": "id", "id": name}, "init_ctx": init_ctx, "detach": True}
        version = str(form.get("version") or "")
        if version:
            body["blueprint"]["version"] = {"kind": "fixed", "value": version}
        goal = str(form.get("goal") or "").strip()
        if goal:
            body["goal"] = goal
        sid = str(form.get("operator_sid") or "").strip()
        if sid:
            body["operator_sid"] = sid
            body["operator_desc"] = str(form.get("operator_desc") or "").strip() or "dashboard console"
        status, data = await self.call(request, "POST", "/v1/tasks", body)
        if status >= 400 or not isinstance(data, Mapping) or "run_id" not in data:
            message = data.get("error") if isinstance(data, Mapping) else str(data)
            return RedirectResponse(f"{back}?{urlencode({'error': message or f'launch failed ({status})'})}", 303)
        return RedirectResponse(f"/runs/{data['run_id']}", status_code=303)

    # -- the route table ------------------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        g = self.gated
        table: list[BaseRoute] = [
            Route("/", g(self.runs_page)),
            Route("/runs/{run_id}", g(self.run_page)),
            Route("/blueprints", g(self.blueprints_page)),
            Route("/blueprints/{name}", g(self.blueprint_page)),
            Route("/operator", g(self.operator_page)),
            Route("/ui/login", g(self.login_page, public=True)),
            Route("/ui/login", g(self.login, mutating=True, public=True), methods=["POST"]),
            Route("/ui/logout", g(self.logout, mutating=True, public=True), methods=["POST"]),
            Route("/ui/runs/{run_id}/cancel", g(self.cancel, mutating=True), methods=["POST"]),
            Route("/ui/runs/{run_id}/resume", g(self.resume, mutating=True), methods=["POST"]),
            Route("/ui/runs/{run_id}/rerun-from", g(self.rerun_from, mutating=True), methods=["POST"]),
            Route("/ui/blueprints/{name}/launch", g(self.launch, mutating=True), methods=["POST"]),
            Route("/ui/api/runs", g(self.api_runs, api=True)),
            Route("/ui/api/runs/{run_id}", g(self.api_run, api=True)),
            Route("/ui/api/runs/{run_id}/live", g(self.api_run_status, api=True)),
            Mount("/ui/static", app=StaticFiles(directory=str(HERE / "static")), name="dashboard-static"),
        ]
        table.extend(self.console.routes())
        return table


async def _field(request: Request, name: str) -> str | None:
    if request.headers.get("content-type", "").startswith("application/json"):
        value = (await json_object(request)).get(name)
    else:
        value = (await request.form()).get(name)
    return value if isinstance(value, str) else None


def _dumps(value: Any, **_: Any) -> str:
    """JSON for the pages' embedded data (`tojson`, which then escapes it for HTML): orjson, for big runs;
    the standard library for what orjson refuses (an integer past 64 bits in a ctx)."""
    try:
        return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        return json.dumps(value, default=str)


def _step_refs(flow: Any) -> list[str]:
    """The step refs of a flow in order of first appearance (for the rerun-from choice)."""
    seen: dict[str, None] = {}

    def visit(node: Any) -> None:
        if isinstance(node, Mapping):
            if node.get("kind") == "step" and isinstance(node.get("ref"), str):
                seen.setdefault(node["ref"], None)
            for key in ("children", "then", "else", "body", "catch"):
                child = node.get(key)
                for item in child if isinstance(child, list) else [child]:
                    visit(item)

    visit(flow)
    return list(seen)


def _static_url(path: str) -> str:
    return f"/ui/static/{path}"


def routes() -> list[BaseRoute]:
    """The dashboard's routes for one app (the server lists this module in `ROUTE_MODULES`)."""
    return Dashboard().routes()


__all__ = ["DASHBOARD_PREFIX", "Dashboard", "routes"]
