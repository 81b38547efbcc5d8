"""Path grammar, reads, copy-on-write writes and existence."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlua_swarm.flow.errors import PathError, PathNotFound, PathWriteError
from mlua_swarm.flow.paths import Path, parse_path


@pytest.mark.parametrize(
    ("text", "keys", "canonical"),
    [
        ("$", (), "$"),
        ("$.a", ("a",), "$.a"),
        ("$.a.b", ("a", "b"), "$.a.b"),
        ('$.a["x.y"]', ("a", "x.y"), '$.a["x.y"]'),
        ('$["k"]', ("k",), "$.k"),
        ('$.a["x"]["y"]', ("a", "x", "y"), "$.a.x.y"),
        ('$["x"].y', ("x", "y"), "$.x.y"),
        ('$.s.parts["verdict"]', ("s", "parts", "verdict"), "$.s.parts.verdict"),
        ("$.r.0", ("r", "0"), "$.r.0"),
        ('$["a[b]"]', ("a[b]",), '$["a[b]"]'),
        ('$["a\\b"]', ("a\\b",), "$.a\\b"),
    ],
)
def test_parse_valid(text: str, keys: tuple[str, ...], canonical: str) -> None:
    path = parse_path(text)
    assert path.keys == keys
    assert path.canonical == canonical
    assert path.source == text
    assert str(path) == canonical


@pytest.mark.parametrize(
    ("text", "position", "hint_word"),
    [
        ("", 0, "$."),
        ("a.b", 0, "$.a.b"),
        ("$.", 1, "key"),
        ("$..a", 1, "key"),
        ("$.a.", 3, "key"),
        ("$.r[0]", 3, "array index"),
        ("$[]", 2, "bracket"),
        ('$[""]', 1, "non-empty"),
        ('$["abc', 1, "close"),
        ('$["a"x', 5, "bracket"),
        ("$a", 1, ".key"),
        ("$.a]", 3, ".key"),
    ],
)
def test_parse_errors_carry_position_and_hint(text: str, position: int, hint_word: str) -> None:
    with pytest.raises(PathError) as info:
        parse_path(text)
    assert info.value.position == position
    assert info.value.hint is not None and hint_word in info.value.hint
    assert info.value.code == "path_syntax"


def test_parse_rejects_non_string() -> None:
    with pytest.raises(PathError):
        parse_path(3)


def test_paths_compare_by_keys() -> None:
    assert parse_path('$.a["b"]') == parse_path("$.a.b")
    assert hash(parse_path('$["a"]')) == hash(parse_path("$.a"))
    assert parse_path("$.a") != parse_path("$.b")


def test_get_walks_keys_and_root_is_a_copy() -> None:
    ctx = {"a": {"b": [1, 2]}, "n": None}
    assert parse_path("$.a.b").get(ctx) == [1, 2]
    assert parse_path("$.n").get(ctx) is None
    whole = parse_path("$").get(ctx)
    assert whole == ctx and whole is not ctx


@pytest.mark.parametrize(
    ("text", "detail"),
    [("$.x", "$ has no key 'x'"), ("$.a.c", "$.a has no key 'c'"), ("$.a.b.c", "$.a.b is a array"), ("$.n.k", "null")],
)
def test_get_missing_raises(text: str, detail: str) -> None:
    ctx = {"a": {"b": [1]}, "n": None}
    with pytest.raises(PathNotFound) as info:
        parse_path(text).get(ctx)
    assert detail in str(info.value)


def test_array_key_never_indexes() -> None:
    with pytest.raises(PathNotFound):
        parse_path("$.r.0").get({"r": ["x"]})
    assert parse_path("$.r.0").get({"r": {"0": "y"}}) == "y"


def test_exists() -> None:
    ctx = {"a": {"b": None}, "s": "text"}
    assert parse_path("$.a.b").exists(ctx)
    assert parse_path("$").exists(ctx)
    assert not parse_path("$.a.c").exists(ctx)
    assert not parse_path("$.s.k").exists(ctx)


def test_set_creates_intermediates_and_copies_on_write() -> None:
    inner = {"b": 1}
    ctx = {"a": inner, "n": None}
    out = parse_path("$.a.c.d").set(ctx, 5)
    assert out is ctx
    assert ctx == {"a": {"b": 1, "c": {"d": 5}}, "n": None}
    assert inner == {"b": 1}
    parse_path("$.n.x").set(ctx, True)
    assert ctx["n"] == {"x": True}


def test_set_top_level_mutates_root() -> None:
    ctx: dict[str, object] = {}
    parse_path("$.k").set(ctx, [1])
    assert ctx == {"k": [1]}


def test_set_through_non_object_writes_nothing() -> None:
    ctx = {"a": {"b": "str"}}
    with pytest.raises(PathWriteError) as info:
        parse_path("$.a.b.c.d").set(ctx, 1)
    assert "$.a.b is a string" in str(info.value)
    assert ctx == {"a": {"b": "str"}}


def test_set_root_replaces_with_a_copy() -> None:
    value = {"x": 1}
    out = parse_path("$").set({"old": 1}, value)
    assert out == {"x": 1} and out is not value
    with pytest.raises(PathWriteError):
        parse_path("$").set({}, [1])


_keys = st.lists(st.text(min_size=1).filter(lambda k: '"' not in k), max_size=5)


@given(_keys)
def test_canonical_text_reparses_to_the_same_keys(keys: list[str]) -> None:
    path = Path(tuple(keys))
    assert parse_path(path.canonical).keys == tuple(keys)


@given(st.text(max_size=30))
def test_parse_arbitrary_text_gives_path_or_path_error(text: str) -> None:
    try:
        path = parse_path("$" + text)
    except PathError as err:
        assert 0 <= err.position <= len(text) + 1
    else:
        assert parse_path(path.canonical) == path


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.sampled_from("abc"), inner, max_size=2),
    max_leaves=6,
)


@given(
    st.dictionaries(st.sampled_from("abc"), _json, max_size=3),
    st.lists(st.sampled_from("abc"), min_size=1, max_size=3),
    _json,
)
def test_set_then_get_or_a_defined_error_and_no_shared_value_changes(
    ctx: dict[str, object], keys: list[str], value: object
) -> None:
    path = Path(tuple(keys))
    before = copy.deepcopy(ctx)
    nested_before = {k: (v, copy.deepcopy(v)) for k, v in ctx.items()}
    try:
        out = path.set(ctx, value)
    except PathWriteError:
        assert ctx == before
        return
    assert path.get(out) == value
    assert path.exists(out)
    for original, snapshot in nested_before.values():
        assert original == snapshot
