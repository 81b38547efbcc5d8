"""Schema validation of a raw Blueprint, with pydantic errors turned into located `schema` diagnostics."""

from __future__ import annotations

import difflib
import json
import types
from collections.abc import Iterator, Mapping, Sequence
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from ..diagnostics import Diagnostic, DiagnosticError, Location
from ..flow.paths import json_type_name
from .schema import Blueprint

_ELEMENTS = {"agents": "agent", "operators": "operator", "metas": "meta"}


def validate_blueprint(raw: Any) -> Blueprint:
    """The typed Blueprint of `raw` (references already expanded); a mismatch raises DiagnosticError."""
    if not isinstance(raw, Mapping):
        raise DiagnosticError(
            [
                Diagnostic(
                    "schema",
                    f"a Blueprint must be a JSON object, got {json_type_name(raw)}",
                    location=Location(json_path="$"),
                    hint='start from {"id": "my-flow", "flow": {...}, "agents": [...]}',
                )
            ]
        )
    try:
        return Blueprint.model_validate(raw)
    except ValidationError as exc:
        raise DiagnosticError(schema_diagnostics(exc, raw)) from None


def schema_diagnostics(exc: ValidationError, raw: Any) -> list[Diagnostic]:
    """One `schema` diagnostic per offending location (alternatives of a union are merged)."""
    grouped: dict[str, list[ErrorDetails]] = {}
    for error in exc.errors(include_url=False):
        grouped.setdefault(json_path_of(error["loc"], raw), []).append(error)
    return [_diagnostic(path, errors, raw) for path, errors in grouped.items()]


def json_path_of(loc: Sequence[int | str], raw: Any) -> str:
    """The JSON path of a pydantic error location, leaving out union member tags that are not keys."""
    parts: list[str] = []
    current = raw
    for index, elem in enumerate(loc):
        last = index == len(loc) - 1
        if isinstance(current, Mapping) and isinstance(elem, str) and (elem in current or last):
            parts.append(_key_part(elem))
            current = current.get(elem)
        elif isinstance(current, list) and isinstance(elem, int) and 0 <= elem < len(current):
            parts.append(f"[{elem}]")
            current = current[elem]
    return "$" + "".join(parts)


def _key_part(key: str) -> str:
    return f".{key}" if key.isidentifier() else f"[{json.dumps(key)}]"


def _diagnostic(path: str, errors: list[ErrorDetails], raw: Any) -> Diagnostic:
    first = errors[0]
    location = _location(first["loc"], path, raw)
    if first["type"] == "extra_forbidden":
        key = str(first["loc"][-1])
        allowed = allowed_keys(first["loc"][:-1])
        close = difflib.get_close_matches(key, allowed, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        return Diagnostic(
            "schema", f"unknown key '{key}'", location=location, hint=hint + "allowed keys here: " + ", ".join(allowed)
        )
    if first["type"] == "missing":
        key = str(first["loc"][-1])
        return Diagnostic("schema", f"missing required key '{key}'", location=location, hint=f"add '{key}'")
    messages = list(dict.fromkeys(_message(e) for e in errors))
    got = json.dumps(first["input"], default=repr)
    if len(got) > 60:
        got = got[:57] + "..."
    return Diagnostic(
        "schema",
        " or ".join(messages) + f" (got {got})",
        location=location,
        hint="see `mse bp schema` for the expected shape",
    )


def _message(error: ErrorDetails) -> str:
    text = error["msg"]
    return text.removeprefix("Value error, ")


def _location(loc: Sequence[int | str], path: str, raw: Any) -> Location:
    if len(loc) >= 2 and loc[0] in _ELEMENTS and isinstance(loc[1], int) and isinstance(raw, Mapping):
        entries = raw.get(str(loc[0]))
        entry = entries[loc[1]] if isinstance(entries, list) and loc[1] < len(entries) else None
        name = entry.get("name") if isinstance(entry, Mapping) else None
        return Location(_ELEMENTS[str(loc[0])], str(name) if name is not None else f"#{loc[1]}", path)
    return Location(json_path=path)


def allowed_keys(loc: Sequence[int | str]) -> list[str]:
    """The keys the model at a pydantic location accepts (empty when the location is not a model)."""
    candidates: list[Any] = [Blueprint]
    for elem in loc:
        candidates = [nxt for tp in candidates for nxt in _step(tp, elem)]
    for tp in candidates:
        if _is_model(tp):
            return [field.alias or name for name, field in tp.model_fields.items()]
    return []


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _flatten(tp: Any) -> Iterator[Any]:
    origin = get_origin(tp)
    if origin is Annotated:
        yield from _flatten(get_args(tp)[0])
    elif origin is Union or origin is types.UnionType:
        for arg in get_args(tp):
            yield from _flatten(arg)
    elif tp is not type(None):
        yield tp


def _step(tp: Any, elem: int | str) -> list[Any]:
    out: list[Any] = []
    for member in _flatten(tp):
        origin = get_origin(member)
        if _is_model(member) and isinstance(elem, str):
            fields = {field.alias or name: field for name, field in member.model_fields.items()}
            if elem in fields:
                out.extend(_flatten(fields[elem].annotation))
            elif _is_tag(member, elem):
                out.append(member)
        elif origin is list and isinstance(elem, int):
            out.extend(_flatten(get_args(member)[0]))
        elif origin is dict and isinstance(elem, str):
            out.extend(_flatten(get_args(member)[1]))
    return out


def _is_tag(model: type[BaseModel], elem: str) -> bool:
    """Whether `elem` is the discriminator value of `model` (pydantic puts it in error locations)."""
    for field in model.model_fields.values():
        if get_origin(field.annotation) is Literal and elem in get_args(field.annotation):
            return True
    return False


__all__ = ["allowed_keys", "json_path_of", "schema_diagnostics", "validate_blueprint"]
