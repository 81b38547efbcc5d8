"""Small helpers route modules share: the server state, JSON bodies, typed query parameters, ids."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..ids import PrefixedId
from ..jsontext import loads_strict
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
        return loads_strict(raw)
    except ValueError as exc:
        raise ApiError(400, f"the body is not valid JSON: {exc}") from None


async def json_object(request: Request, *, required: bool = True) -> dict[str, Any]:
    body = await json_body(request, required=required)
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    return body


MAX_QUERY_INT = 2**62
"""The largest number a query parameter (a limit, a sequence number) may hold; SQLite integers are 64-bit."""


def query_int(request: Request, name: str, default: int | None = None, *, minimum: int = 0) -> int | None:
    value = request.query_params.get(name)
    if value is None or value == "":
        return default
    return bounded_int(value, f"query parameter {name!r}", minimum)


def bounded_int(value: str, what: str, minimum: int = 0) -> int:
    """`value` as an integer from `minimum` to `MAX_QUERY_INT`; anything else is a 400."""
    text = value.strip()
    digits = text.removeprefix("-")
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 20:
        raise ApiError(400, f"{what} must be an integer, got {value[:40]!r}")
    number = int(text)
    if number < minimum:
        raise ApiError(400, f"{what} must be at least {minimum}")
    if number > MAX_QUERY_INT:
        raise ApiError(400, f"{what} must be at most {MAX_QUERY_INT}")
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
    "MAX_QUERY_INT",
    "bounded_int",
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
