"""The ASGI application: route modules, JSON errors, the body limit and the admin-token gate.

Each route module exposes `routes() -> list[BaseRoute]`; `ROUTE_MODULES` is the one list of them
(other areas add their module here). Routes reach the shared state as `request.app.state.server`.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from .auth import AdminGuard, BodyLimit, OriginGuard
from .errors import EXCEPTION_HANDLERS, InternalErrors, error_response
from .routes_events import StreamCount
from .state import ServerState

ROUTE_MODULES: tuple[str, ...] = (
    "mlua_swarm.server.routes_health",
    "mlua_swarm.server.routes_blueprints",
    "mlua_swarm.server.routes_tasks",
    "mlua_swarm.server.routes_runs",
    "mlua_swarm.server.routes_events",
    "mlua_swarm.server.routes_worker",
    "mlua_swarm.server.routes_data",
    "mlua_swarm.server.routes_operators",
    "mlua_swarm.server.routes_openapi",
    "mlua_swarm.server.dashboard.routes",
)
"""Modules contributing routes, in matching order; each defines `routes() -> list[BaseRoute]`."""


def collect_routes(state: ServerState) -> list[BaseRoute]:
    found: list[BaseRoute] = []
    for name in ROUTE_MODULES:
        found.extend(importlib.import_module(name).routes())
    return [*found, *state.extra_routes]


async def _not_found(request: Request, exc: Exception) -> Response:
    return error_response(404, f"no route for {request.method} {request.url.path}")


async def _not_allowed(request: Request, exc: Exception) -> Response:
    headers = getattr(exc, "headers", None) or {}
    allowed = sorted(m.strip() for m in headers.get("Allow", "").split(",") if m.strip())
    answers = f" (it answers {', '.join(allowed)})" if allowed else ""
    return error_response(
        405,
        f"method {request.method} not allowed on {request.url.path}{answers}",
        {"allow": allowed, "hint": "see docs/server.md for the routes and their methods"},
        headers=headers or None,
    )


def create_app(state: ServerState) -> Starlette:
    """The app serving `state`; its lifespan starts the runs manager and closes everything on shutdown."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await state.start()
        try:
            yield
        finally:
            await state.close()

    handlers = {**EXCEPTION_HANDLERS, 404: _not_found, 405: _not_allowed}
    app = Starlette(
        routes=collect_routes(state),
        exception_handlers=handlers,
        middleware=[
            Middleware(InternalErrors),
            Middleware(
                OriginGuard, loopback=lambda: state.config.loopback, allowed_hosts=lambda: state.config.allowed_hosts
            ),
            Middleware(
                BodyLimit,
                limit=lambda: state.config.max_body_bytes,
                stall_secs=lambda: state.config.request_body_stall_secs,
            ),
            Middleware(AdminGuard, token=lambda: state.config.admin_token, exempt=lambda: state.auth_exempt),
        ],
        lifespan=lifespan,
    )
    app.state.server = state
    app.state.event_streams = StreamCount()
    return app


__all__ = ["ROUTE_MODULES", "collect_routes", "create_app"]
