"""Lua ↔ JSON conversion: JSON data survives a trip through Lua unchanged."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from mlua_swarm.dsl.sandbox import LuaSandbox

SANDBOX = LuaSandbox()

scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**62), max_value=2**62),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
# Empty objects become [] and nulls leave holes in Lua arrays, so the round trip avoids both.
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.dictionaries(st.text(max_size=8), inner, min_size=1, max_size=5),
    ),
    max_leaves=25,
)


@settings(max_examples=150, deadline=None)
@given(json_values)
def test_json_values_round_trip_through_lua(value: Any) -> None:
    assert SANDBOX.run("return _V", "=rt", globals_={"_V": value}).value == value


@settings(max_examples=50, deadline=None)
@given(json_values)
def test_integers_and_floats_keep_their_type(value: Any) -> None:
    back = SANDBOX.run("return _V", "=rt", globals_={"_V": value}).value
    assert json.dumps(back, sort_keys=True) == json.dumps(value, sort_keys=True)
