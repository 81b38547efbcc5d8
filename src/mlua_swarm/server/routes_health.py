"""`GET /v1/healthz`, `/v1/status` (what a restart would interrupt) and `/v1/doctor` (the startup snapshot)."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from .. import __version__
from .http import ok, server

log = logging.getLogger(__name__)


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


async def status(request: Request) -> Response:
    """Never fails: a count that cannot be read is reported as 0."""
    state = server(request)
    attached = 0
    if state.operators is not None:
        try:
            attached = state.operators.attached_count()
        except Exception:
            log.warning("operator hub could not count its sessions", exc_info=True)
    return ok(
        {
            "running_runs": state.runs.running_count,
            "attached_operators": attached,
            "periodic_jobs": [],
            "uptime_secs": round(state.uptime, 3),
        }
    )


async def doctor(request: Request) -> Response:
    state = server(request)
    config = state.config
    names = sorted(v.name for v in await state.store.list_blueprints())
    return ok(
        {
            "server_version": __version__,
            "bind": config.bind,
            "base_url": state.base_url,
            "store": state.store.shown_url,
            "blueprint_backend": "store",
            "seed_blueprint_id": config.seed_blueprint_id,
            "admin_token_required": bool(config.admin_token),
            "worker_token_ttl_secs": config.worker_token_ttl_secs,
            "sync_timeout_secs": config.sync_timeout_secs,
            "max_body_bytes": config.max_body_bytes,
            "registered_blueprint_ids": names,
            "registered_blueprint_count": len(names),
        }
    )


def routes() -> list[BaseRoute]:
    return [
        Route("/v1/healthz", healthz, methods=["GET"]),
        Route("/v1/status", status, methods=["GET"]),
        Route("/v1/doctor", doctor, methods=["GET"]),
    ]
