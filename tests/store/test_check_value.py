"""`check_value`, the gate for values workers hand back in-process: orjson first, the strict encoder when unsure.

Each case is compared with the definition: the standard library's strict encoder (no NaN, no
infinity) accepts the value and its text is at most `limit` characters.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import math
import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlua_swarm.jsontext import JsonValueError, _plain_json, check_value

_STRICT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def reference(value: Any, limit: int) -> bool:
    try:
        return len(_STRICT.encode(value)) <= limit
    except (ValueError, TypeError, RecursionError):
        return False


def accepted(value: Any, limit: int = 1 << 20) -> bool:
    try:
        check_value(value, limit)
    except JsonValueError:
        return False
    return True


class Colour(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


class Name(str):
    pass


@dataclasses.dataclass
class Point:
    x: int


ODD_VALUES = [
    {"a": 1, "b": [1, 2.5, "x", True, False]},
    ("a", 1),
    {"a": ("t", 2)},
    {"n": None},
    [None, [float("nan")]],
    {"deep": {"x": [1.0, float("inf")]}},
    [float("-inf")],
    {1: "int key", 2.5: "float key", False: "bool key", None: "null key"},
    {(1, 2): "tuple key"},
    [2**64, -(2**70)],
    {"id": uuid.uuid4()},
    {"colour": Colour.RED},
    {"level": Level.HIGH},
    {"name": Name("x")},
    {Name("k"): 1},
    {"when": datetime.datetime(2026, 1, 1)},
    {"point": Point(1)},
    {"set": {1, 2}},
    [b"bytes"],
    [1 + 2j],
    ["\ud800 lone surrogate"],
    {"text": "\u00e9\u4e2d\U0001f600 and \n\t\x00 escapes"},
    {"f": [1e-5, 1e16, 0.1, -0.0, 5e-324, 1.7976931348623157e308]},
]


@pytest.mark.parametrize("value", ODD_VALUES, ids=lambda v: type(v).__name__)
def test_check_value_agrees_with_the_strict_encoder(value: Any) -> None:
    assert accepted(value) == reference(value, 1 << 20)


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ({"a": [float("nan")]}, "NaN or an infinity"),
        ({"a": {"b": float("inf")}}, "NaN or an infinity"),
        ({"a": uuid.UUID(int=1)}, "not JSON data"),
        ([Colour.RED], "not JSON data"),
        ({"a": {1}}, "not JSON data"),
    ],
)
def test_refusals_say_what_is_wrong(value: Any, words: str) -> None:
    with pytest.raises(JsonValueError, match=words):
        check_value(value)


def test_orjson_settles_plain_data_and_leaves_the_rest_to_the_strict_encoder() -> None:
    big = {f"k{i}": {"text": "x" * 100, "n": i, "tags": ["a", "b", 1.5]} for i in range(2000)}
    assert _plain_json(big, 1 << 24)
    for unsure in ({"a": None}, {"a": [float("nan")]}, {1: 2}, [2**70], {"a": Colour.RED}, [uuid.UUID(int=1)]):
        assert not _plain_json(unsure, 1 << 24)


@pytest.mark.parametrize("unit", ["x", "\u00e9", "\U0001f600"])
def test_the_size_limit_counts_characters_of_json_text_at_the_edge(unit: str) -> None:
    limit = 4096
    fits = [unit * (limit - 4)]  # ["...."]: the brackets and quotes are 4 characters
    assert len(_STRICT.encode(fits)) == limit
    assert accepted(fits, limit)
    assert not accepted([unit * (limit - 3)], limit)
    with pytest.raises(JsonValueError, match="larger than 4096 bytes"):
        check_value({"a": [unit * limit]}, limit)


def test_deep_nesting_is_refused_without_a_traceback() -> None:
    value: Any = 1
    for _ in range(100_000):
        value = [value]
    assert not accepted(value)


def test_a_cycle_is_refused() -> None:
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    assert not accepted(cyclic)


json_like = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5)
        | st.tuples(children, children)
        | st.dictionaries(st.text(max_size=5) | st.integers(-5, 5), children, max_size=5)
    ),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None)
@given(json_like, st.integers(min_value=2, max_value=400))
def test_check_value_matches_the_strict_definition_on_random_values(value: Any, limit: int) -> None:
    # In a list: a scalar on its own is checked without encoding (a string by its length alone).
    assert accepted([value], limit) == reference([value], limit)


def test_finite_floats_pass_and_non_finite_scalars_are_refused() -> None:
    assert accepted(1.5) and accepted([1.5])
    for bad in (math.nan, math.inf, -math.inf):
        assert not accepted(bad)
