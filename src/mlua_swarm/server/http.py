"""Small helpers route modules share: the server state, JSON bodies, typed query parameters, ids."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..ids import PrefixedId
from .errors import ApiError
from .state import ServerState

IdT = TypeVar("IdT", bound=PrefixedId)


def server(request: Request) -> ServerState:
    state: ServerState = request.app.state.server
    return state


def ok(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return JSONResponse(body, status_code=status, headers=dict(headers) if headers else None)


def no_content() -> Response:
    return Response(status_code=204)


async def json_body(request: Request, *, required: bool = True) -> Any:
    """The request body parsed as JSON (None for an empty optional body); 400 when it is not JSON."""
    raw = await request.body()
    if not raw.strip():
        if required:
            raise ApiError(400, "a JSON body is required")
        return None
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the body is not valid JSON: {exc}") from None


async def json_object(request: Request, *, required: bool = True) -> dict[str, Any]:
    body = await json_body(request, required=required)
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    return body


def query_int(request: Request, name: str, default: int | None = None, *, minimum: int = 0) -> int | None:
    value = request.query_params.get(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise ApiError(400, f"query parameter {name!r} must be an integer, got {value!r}") from None
    if number < minimum:
        raise ApiError(400, f"query parameter {name!r} must be at least {minimum}")
    return number


def query_bool(request: Request, name: str, default: bool) -> bool:
    value = request.query_params.get(name)
    if value is None or value == "":
        return default
    if value.lower() in ("1", "true", "yes"):
        return True
    if value.lower() in ("0", "false", "no"):
        return False
    raise ApiError(400, f"query parameter {name!r} must be true or false, got {value!r}")


def parse_id(kind: type[IdT], value: str) -> IdT:
    """A prefixed id from the wire; a wrong prefix is a 400."""
    try:
        return kind.parse(value)
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None


def path_param(request: Request, name: str) -> str:
    value: str = request.path_params[name]
    return value


__all__ = [
    "json_body",
    "json_object",
    "no_content",
    "ok",
    "parse_id",
    "path_param",
    "query_bool",
    "query_int",
    "server",
]
