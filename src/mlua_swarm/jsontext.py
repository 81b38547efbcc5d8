"""The JSON text forms the package writes (compact, canonical) and the checks on values it accepts.

Compact JSON is for prompts and stored values; canonical JSON (keys sorted) is for hashing:
`canonical` (the standard library's text, behind content-addressed Blueprint versions) and
`canonical_bytes` (orjson's, several times faster, behind the replay keys of steps).
`check_value` is the gate for a value a worker hands back in-process: JSON data only, finite
numbers only, and at most `MAX_VALUE_BYTES` characters of JSON text. `loads_strict` parses JSON
from outside (a child's frame, an HTTP body) the same way: `NaN`/`Infinity` and runaway nesting
are refused as errors rather than becoming values nothing downstream can write back out.
"""

from __future__ import annotations

import json
import marshal
import math
from typing import Any

import orjson

MAX_VALUE_BYTES = 16 * 1024 * 1024
"""The default cap on one value's JSON text inside the process (a worker's result, a script's return)."""

_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
_LENIENT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=repr)
_CANONICAL = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, sort_keys=True)
_STRICT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


class JsonValueError(ValueError):
    """A value that is not JSON data, holds a non-finite number, nests too deeply, or is too large."""


def compact(value: Any) -> str:
    """Compact JSON with UTF-8 kept as is."""
    return _COMPACT.encode(value)


def wire_text(value: Any) -> str:
    """Compact JSON of a message to send (an operator frame): orjson, the standard library taking what
    orjson refuses (an integer past 64 bits, which a step's ctx or value may hold)."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return _COMPACT.encode(value)


_ORJSON_PROMPT = orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME


def text_of(value: Any, *, lenient: bool = False) -> str:
    """A string as is; anything else as compact JSON (prompts). `lenient` (messages) writes what
    JSON cannot hold with `repr` instead of raising.

    Prompts are encoded by orjson (a 1 MB object in about a millisecond), the standard library
    taking what orjson refuses; orjson writes a non-finite number as `null`, which JSON readers
    accept, where the standard library writes `NaN`.
    """
    if isinstance(value, str):
        return value
    if not lenient:
        try:
            return orjson.dumps(value, option=_ORJSON_PROMPT).decode()
        except TypeError:
            return _COMPACT.encode(value)
    try:
        return _LENIENT.encode(value)
    except ValueError:
        return repr(value)


def canonical(value: Any) -> str:
    """Key-sorted compact JSON: equal values give equal text, so it can be hashed."""
    return _CANONICAL.encode(value)


_ORJSON_CANONICAL = (
    orjson.OPT_SORT_KEYS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
)


def canonical_bytes(value: Any) -> bytes:
    """Key-sorted compact JSON as UTF-8: equal values give equal bytes, in every process.

    orjson encodes what it takes as plain JSON data; values it refuses (integers past 64 bits,
    non-string keys, subclasses of the JSON types, lone surrogates) take the standard library's
    `canonical` text, so which encoder applies depends only on the value. The two agree on
    everything but numbers below 1e-4 in magnitude (orjson writes `0.00001`, the standard
    library `1e-05`) and non-finite numbers (orjson writes `null`).
    """
    try:
        return orjson.dumps(value, option=_ORJSON_CANONICAL)
    except TypeError:
        return _CANONICAL.encode(value).encode("utf-8", "surrogatepass")


def check_value(value: Any, limit: int = MAX_VALUE_BYTES) -> int:
    """Raise `JsonValueError` unless `value` is JSON data of at most `limit` characters of JSON text;
    returns the size it found (a string's length, a container's encoded length, 8 for a number or
    a constant), which callers may use as the value's weight.

    Scalars are checked without encoding; containers go through orjson first (`_plain_json`) and,
    unless that settles it, are encoded once by the standard library's C encoder, which finds NaN,
    infinities and objects that are not JSON data anywhere inside.
    """
    kind = type(value)
    if kind is str:
        if len(value) > limit:
            raise JsonValueError(_too_large(limit))
        return len(value)
    if value is None or kind is bool or kind is int:
        return 8
    if kind is float:
        if not math.isfinite(value):
            raise JsonValueError(f"{value} is not a finite number; JSON has no NaN or infinity")
        return 8
    size = _plain_json(value, limit)
    if size is not None:
        return size
    try:
        text = _STRICT.encode(value)
    except ValueError:
        raise JsonValueError("the value holds NaN or an infinity; JSON has no such numbers") from None
    except TypeError as exc:
        raise JsonValueError(f"the value is not JSON data: {exc}") from None
    except RecursionError:
        raise JsonValueError("the value is nested too deeply") from None
    if len(text) > limit:
        raise JsonValueError(_too_large(limit))
    return len(text)


_ORJSON_CHECK = orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME


def _plain_json(value: Any, limit: int) -> int | None:
    """orjson's length of `value` when it certainly passes the strict check, found without the
    standard library's encoder (~15 ms a MB); None means "not known": the strict check decides.

    orjson encodes (about a millisecond a MB) only dicts with `str` keys, lists, tuples, exact `str`,
    `int` up to 64 bits, `float` and the constants here, plus enum members and UUIDs; marshal (C, no
    text) refuses those two and every other type. A NaN or an infinity comes out of orjson as `null`,
    so output holding `null` goes to the strict check. JSON text is at most twice orjson's bytes in
    characters (orjson writes `1e-5` where the standard library writes `1e-05`), so only output within
    half the limit is taken as small enough.
    """
    try:
        data = orjson.dumps(value, option=_ORJSON_CHECK)
    except TypeError:  # orjson.JSONEncodeError: a type or a depth orjson refuses, a lone surrogate
        return None
    if len(data) > limit // 2 or b"null" in data:
        return None
    try:
        marshal.dumps(value)
    except ValueError:  # "unmarshallable object", or nested too deeply
        return None
    return len(data)


def _too_large(limit: int) -> str:
    return f"the value is larger than {_size(limit)} as JSON text"


def _size(limit: int) -> str:
    return f"{limit >> 20} MiB" if limit >= 1 << 20 and limit % (1 << 20) == 0 else f"{limit} bytes"


def _refuse_constant(name: str) -> Any:
    raise JsonValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JsonValueError(f"{text} is out of the range of a JSON number")
    return value


def loads_strict(text: str | bytes) -> Any:
    """`json.loads` that refuses `NaN`, `Infinity` and numbers that overflow to them; every failure
    is a `ValueError` (nesting too deep, over-long integers and bad UTF-8 included)."""
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        raise JsonValueError("the JSON text is nested too deeply") from None


__all__ = [
    "MAX_VALUE_BYTES",
    "JsonValueError",
    "canonical",
    "canonical_bytes",
    "check_value",
    "compact",
    "loads_strict",
    "text_of",
    "wire_text",
]
