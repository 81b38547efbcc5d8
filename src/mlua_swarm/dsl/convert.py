"""Lua ↔ JSON value conversion with upstream's rules.

Lua → JSON: a table whose keys are exactly 1..n is an array, every empty table is `[]`, the
`F.obj()` marker (exactly `{__mse_empty_object__ = true}`) is `{}`, any other table is an object
(integer keys become strings, allowed only when there is no key 1, so an array never silently
loses its extra keys); integers stay integers and floats stay floats. What has no JSON form
(functions, NaN, arrays mixed with keys, cycles, invalid UTF-8) raises `LuaConversionError`
naming the JSON path, so nothing is silently dropped. Shared sub-tables are fine.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from lupa import lua54

EMPTY_OBJECT_MARKER = "__mse_empty_object__"


class LuaConversionError(ValueError):
    """A Lua value has no JSON form; the message names where it sits."""


def lua_to_json(value: Any, path: str = "$") -> Any:
    """Convert a value returned by lupa into plain JSON data."""
    return _to_json(value, path, set())


def _to_json(value: Any, path: str, active: set[int]) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise LuaConversionError(f"{path}: {value} has no JSON form")
        return value
    if lua54.lua_type(value) != "table":
        kind = lua54.lua_type(value) or type(value).__name__
        raise LuaConversionError(f"{path}: a {kind} has no JSON form")
    ident = id(value)
    if ident in active:
        raise LuaConversionError(f"{path}: the table contains itself")
    active.add(ident)
    try:
        return _table_to_json(value, path, active)
    finally:
        active.discard(ident)


def _table_to_json(table: Any, path: str, active: set[int]) -> Any:
    try:
        items = list(table.items())
    except UnicodeDecodeError as exc:
        raise LuaConversionError(f"{path}: a key or string is not valid UTF-8 text") from exc
    if not items:
        return []
    if len(items) == 1 and items[0][0] == EMPTY_OBJECT_MARKER and items[0][1] is True:
        return {}
    ints = sorted(k for k, _ in items if isinstance(k, int) and not isinstance(k, bool))
    if len(ints) == len(items) and ints[-1] == len(ints) and ints[0] == 1:
        ordered = sorted(items)
        return [_to_json(v, f"{path}[{i}]", active) for i, (_, v) in enumerate(ordered)]
    if ints and ints[0] == 1:
        raise LuaConversionError(
            f"{path}: a table mixes array items with other keys (integer keys {_describe(ints)}); "
            "JSON needs either an array 1..n or an object"
        )
    out: dict[str, Any] = {}
    for key, item in items:
        if isinstance(key, int) and not isinstance(key, bool):
            name = str(key)
        elif isinstance(key, str):
            name = key
        else:
            raise LuaConversionError(f"{path}: a {lua54.lua_type(key) or type(key).__name__} key has no JSON form")
        out[name] = _to_json(item, f"{path}.{name}", active)
    return dict(sorted(out.items()))


def _describe(keys: list[int]) -> str:
    return ", ".join(str(k) for k in keys[:5]) + (", ..." if len(keys) > 5 else "")


def json_to_lua(runtime: Any, value: Any) -> Any:
    """Convert JSON data into Lua values owned by `runtime` (objects and arrays become tables).

    JSON null becomes nil, so an array holding null has a hole there (as with upstream's scripts).
    An integer outside Lua's 64-bit range becomes a float, as upstream's conversion makes it.
    """
    try:
        if isinstance(value, Mapping | list | tuple):
            return runtime.table_from(value, recursive=True)
        return _lua_integer(value)
    except OverflowError:
        return runtime.table_from(_wide_integers_as_floats(value), recursive=True)


_LUA_INTEGERS = range(-(2**63), 2**63)


def _lua_integer(value: Any) -> Any:
    if type(value) is int and value not in _LUA_INTEGERS:
        try:
            return float(value)
        except OverflowError:
            raise LuaConversionError(f"the integer {str(value)[:20]}… is too large for a Lua number") from None
    return value


def _wide_integers_as_floats(value: Any) -> Any:
    """A copy of `value` whose integers outside Lua's range are floats (the rare path: `table_from`
    refused the value as it was)."""
    if isinstance(value, Mapping):
        return {key: _wide_integers_as_floats(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_wide_integers_as_floats(item) for item in value]
    return _lua_integer(value)


__all__ = ["EMPTY_OBJECT_MARKER", "LuaConversionError", "json_to_lua", "lua_to_json"]
