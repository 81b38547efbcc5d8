"""A worker's private copy of its input (`WorkerInvocation.input`), large inputs built with the cyclic GC held off.

The copy is defined as what rendering the input to JSON and parsing it back gives; the large-input
path must agree with that definition, leave the GC as it found it, and run no collection while
it builds the copy (a collection there moves the half-built tree to the old generations).
"""

from __future__ import annotations

import gc
import json
import math
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlua_swarm.core.engine import Engine
from mlua_swarm.ids import StepId
from mlua_swarm.jsontext import compact
from mlua_swarm.worker.adapter import _QUIET_GC_BYTES, WorkerInvocation


def invocation(directive: Any) -> WorkerInvocation:
    engine = Engine()
    return WorkerInvocation(engine.attach("t"), StepId("ST-1"), 1, "a", directive)


def reference_copy(value: Any) -> Any:
    """The definition: orjson's text parsed back, or the standard library's for what orjson refuses;
    a string is a prompt, parsed as JSON when it parses."""
    if type(value) in (int, float, bool, type(None)):
        return value
    if type(value) is str:
        try:
            return json.loads(value)
        except ValueError:
            return value
    try:
        return orjson.loads(orjson.dumps(value))
    except orjson.JSONEncodeError:
        return json.loads(compact(value))


def big_object(keys: int) -> dict[str, Any]:
    return {f"k{i}": {"text": "x" * 100, "n": i, "tags": ["a", "b", "c"]} for i in range(keys)}


@pytest.fixture
def collections_seen() -> Iterator[list[int]]:
    """The generation of every collection the cyclic GC runs while the test body runs."""
    seen: list[int] = []

    def note(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            seen.append(info["generation"])

    gc.callbacks.append(note)
    try:
        yield seen
    finally:
        gc.callbacks.remove(note)


def test_a_large_input_is_copied_with_no_collection_while_it_is_built(collections_seen: list[int]) -> None:
    big = big_object(2_000)
    assert len(orjson.dumps(big)) >= _QUIET_GC_BYTES
    inv = invocation(big)
    gc.collect()
    collections_seen.clear()
    copy = inv.input
    # Built with the GC on, the same copy sees about a dozen collections, older generations among
    # them; built with it off and left young, one young collection traces it all when the GC is back.
    assert collections_seen == [], collections_seen
    assert gc.isenabled()
    copied = {id(copy), id(copy["k0"]), id(copy["k0"]["tags"])}
    assert not copied & {id(obj) for obj in gc.get_objects(generation=0)}
    assert not copied & {id(obj) for obj in gc.get_objects(generation=1)}
    assert copy == big and copy is not big and list(copy) == list(big)
    copy["k1"]["tags"].append("mine")
    copy["k0"]["n"] = -1
    assert big["k1"]["tags"] == ["a", "b", "c"] and big["k0"]["n"] == 0


def test_a_large_json_string_is_parsed_with_no_collection_and_the_gc_left_on(collections_seen: list[int]) -> None:
    text = json.dumps(big_object(2_000))
    inv = invocation(text)
    gc.collect()
    collections_seen.clear()
    parsed = inv.input
    assert collections_seen == [], collections_seen
    assert parsed == json.loads(text)
    assert gc.isenabled()


def test_a_large_text_that_is_not_json_is_the_input_itself_and_the_gc_stays_on() -> None:
    text = "{" + "x" * _QUIET_GC_BYTES
    assert invocation(text).input == text
    assert gc.isenabled()


def test_a_caller_that_holds_the_gc_off_finds_it_off_afterwards() -> None:
    big = big_object(2_000)
    gc.disable()
    try:
        assert invocation(big).input == big
        assert invocation(json.dumps(big)).input == big
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_objects_the_process_froze_stay_frozen_and_the_copy_is_still_right() -> None:
    """`mse` commands freeze their heap: moving the young generation on would thaw it, so it is left young."""
    gc.collect()
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        big = big_object(2_000)
        assert invocation(big).input == big
        assert invocation(json.dumps(big)).input == big
        assert gc.get_freeze_count() == frozen
        assert gc.isenabled()
    finally:
        gc.unfreeze()


@pytest.mark.parametrize("size", [5_000, _QUIET_GC_BYTES])
def test_a_text_nested_past_any_parser_depth_is_the_input_itself(size: int) -> None:
    """orjson stops at 1,024 levels and the standard library's parser runs out of stack: the text is a prompt."""
    text = "[" * size
    assert invocation(text).input == text
    assert gc.isenabled()


def test_a_large_input_orjson_refuses_takes_the_standard_library_and_the_gc_comes_back_on() -> None:
    big: dict[Any, Any] = {f"k{i}": {"huge": 2**70 + i, "t": ("a", "b")} for i in range(2_000)}
    big[7] = "int key"
    copy = invocation(big).input
    assert gc.isenabled()
    assert copy == json.loads(json.dumps(big))
    assert copy["7"] == "int key" and copy["k3"]["t"] == ["a", "b"]


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
)
json_like = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=4) | st.integers(-5, 5), inner, max_size=4)
    ),
    max_leaves=12,
)


def same(a: Any, b: Any) -> bool:
    """Equal, with NaN equal to NaN and every container's type and key order the same."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


@settings(max_examples=150, deadline=None)
@given(json_like, st.booleans())
def test_the_copy_is_what_rendering_and_parsing_back_gives_at_any_size(value: Any, large: bool) -> None:
    """Small values and the same values padded past the size where the GC is held off."""
    if large:
        value = {"pad": "p" * _QUIET_GC_BYTES, "value": value}
    assert same(invocation(value).input, reference_copy(value))
    assert gc.isenabled()
