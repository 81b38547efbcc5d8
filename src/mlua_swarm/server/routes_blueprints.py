"""Blueprint routes: register versions (content-addressed), list, head, history, archive, unarchive."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..blueprint.loader import expand_refs, has_refs
from ..store import BlueprintNotFound, BlueprintVersion
from .errors import ApiError
from .http import json_body, no_content, ok, path_param, query_bool, query_int, server
from .state import ServerState


def _summary(version: BlueprintVersion) -> dict[str, Any]:
    return {
        "id": version.name,
        "version": version.content_hash,
        "number": version.version,
        "semver": version.semver,
        "created_at": version.created_at,
        "archived": version.archived,
    }


async def history_of(state: ServerState, name: str) -> list[BlueprintVersion]:
    """Every version of `name`, oldest first; 404 when there is none."""
    history = await state.store.blueprint_history(name)
    if not history:
        raise ApiError(404, f"no blueprint named {name!r}", {"hint": "register it with POST /v1/blueprints/{id}"})
    return history


def checked_document(state: ServerState, name: str, body: Any) -> dict[str, Any]:
    """The Blueprint as it will be stored: references expanded, schema checked, `id` matching the path."""
    if not isinstance(body, dict):
        raise ApiError(400, "a Blueprint must be a JSON object")
    declared = body.get("id")
    if declared is not None and declared != name:
        raise ApiError(400, f"the body's id {declared!r} differs from the path's {name!r}")
    document = {**body, "id": name}
    if has_refs(document):
        document = expand_refs(document, state.base_dir)
    state.compile(document)
    return document


async def register(request: Request) -> Response:
    state = server(request)
    name = path_param(request, "id")
    document = checked_document(state, name, await json_body(request))
    history = await state.store.blueprint_history(name)
    if history and history[-1].archived:
        raise ApiError(409, f"blueprint {name!r} is archived", {"hint": f"POST /v1/blueprints/{name}/unarchive first"})
    known = {v.content_hash for v in history}
    version = await state.store.put_blueprint(name, document)
    seeded = version.content_hash not in known
    body = {"id": name, "version": version.content_hash, "number": version.version, "seeded": seeded}
    return ok(body, 201 if seeded else 200)


async def list_all(request: Request) -> Response:
    state = server(request)
    versions = await state.store.list_blueprints(include_archived=query_bool(request, "include_archived", False))
    return ok({"count": len(versions), "blueprints": [_summary(v) for v in versions]})


async def head(request: Request) -> Response:
    state = server(request)
    name = path_param(request, "id")
    selector = request.query_params.get("version") or "latest"
    try:
        version = await state.store.get_blueprint(name, selector)
    except BlueprintNotFound as exc:
        raise ApiError(404, exc.message, {"hint": exc.hint} if exc.hint else None) from None
    return ok({**_summary(version), "blueprint": version.document})


async def history(request: Request) -> Response:
    state = server(request)
    limit = query_int(request, "limit", 20, minimum=1)
    versions = list(reversed(await history_of(state, path_param(request, "id"))))[:limit]
    entries = [
        {**_summary(v), "hash": v.content_hash, "version_label": v.semver or f"v{v.version}", "rationale": None}
        for v in versions
    ]
    return ok({"count": len(entries), "entries": entries})


async def archive(request: Request) -> Response:
    state = server(request)
    name = path_param(request, "id")
    await history_of(state, name)
    await state.store.archive_blueprint(name, True)
    return no_content()


async def unarchive(request: Request) -> Response:
    state = server(request)
    name = path_param(request, "id")
    await history_of(state, name)
    await state.store.archive_blueprint(name, False)
    return no_content()


def routes() -> list[BaseRoute]:
    return [
        Route("/v1/blueprints", list_all, methods=["GET"]),
        Route("/v1/blueprints/{id}", register, methods=["POST"]),
        Route("/v1/blueprints/{id}", archive, methods=["DELETE"]),
        Route("/v1/blueprints/{id}/head", head, methods=["GET"]),
        Route("/v1/blueprints/{id}/history", history, methods=["GET"]),
        Route("/v1/blueprints/{id}/unarchive", unarchive, methods=["POST"]),
    ]
