"""Version requirements used to select a stored Blueprint."""

from __future__ import annotations

import pytest

from mlua_swarm.store.semver import is_requirement, matches, parse_version


@pytest.mark.parametrize(
    ("requirement", "version", "expected"),
    [
        ("1.2.3", (1, 2, 3), True),
        ("=1.2.3", (1, 2, 4), False),
        ("^1.2", (1, 9, 0), True),
        ("^1.2", (2, 0, 0), False),
        ("^0.3", (0, 4, 0), False),
        ("~1.2", (1, 2, 9), True),
        ("~1.2", (1, 3, 0), False),
        ("~1", (1, 9, 9), True),
        (">=1.0, <2", (1, 5, 0), True),
        (">=1.0 <2", (2, 0, 0), False),
        ("> 1.0", (1, 0, 1), True),
        ("1.x", (1, 7, 1), True),
        ("1.2.*", (1, 3, 0), False),
        ("*", (9, 0, 0), True),
    ],
)
def test_matches(requirement: str, version: tuple[int, int, int], expected: bool) -> None:
    assert matches(requirement, version) is expected


def test_parse_and_classify() -> None:
    assert parse_version("v1.2") == (1, 2, 0)
    assert parse_version("1.2.3-rc1") == (1, 2, 3)
    assert parse_version("latest") is None
    assert is_requirement("^1") and not is_requirement("latest") and not is_requirement("abc123")
    with pytest.raises(ValueError):
        matches(">=banana", (1, 0, 0))
