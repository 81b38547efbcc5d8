"""The Blueprint schema: upstream documents are accepted, unknown keys are refused with their path."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from mlua_swarm.blueprint.schema import Blueprint, RetrySpec, blueprint_json_schema
from mlua_swarm.blueprint.validate import validate_blueprint
from mlua_swarm.core.config import RetryPolicy
from mlua_swarm.core.engine import VerdictContract
from mlua_swarm.diagnostics import DiagnosticError

from .helpers import UPSTREAM_EXAMPLES, agent, blueprint, fixture, only, step

UPSTREAM_TOP_LEVEL = {
    "schema_version",
    "id",
    "flow",
    "agents",
    "operators",
    "metas",
    "hints",
    "strategy",
    "metadata",
    "spawner_hints",
    "default_agent_kind",
    "default_operator_kind",
    "default_init_ctx",
    "default_agent_ctx",
    "default_context_policy",
    "projection_placement",
    "audits",
    "degradation_policy",
    "runners",
    "default_runner",
    "subprocesses",
    "check_policy",
    "blueprint_ref_includes",
}


def schema_errors(raw: object) -> list:
    with pytest.raises(DiagnosticError) as info:
        validate_blueprint(raw)
    return info.value.diagnostics


@pytest.mark.parametrize("example", UPSTREAM_EXAMPLES, ids=lambda p: p.stem)
def test_upstream_examples_are_accepted(example: Path) -> None:
    raw = json.loads(example.read_text())
    bp = validate_blueprint(raw)
    assert bp.id == raw["id"]
    assert [a.name for a in bp.agents] == [a["name"] for a in raw["agents"]]
    assert bp.flow == raw["flow"]


def test_example_b_carries_its_contract_runner_and_lints() -> None:
    bp = validate_blueprint(fixture("upstream_b_verdict_loop.json"))
    checker = bp.agents[0]
    assert checker.verdict is not None
    assert checker.verdict.contract() == VerdictContract("part", ("PASS", "FAIL"))
    assert bp.runners[0].runner.backend == "ws_operator"
    assert bp.default_runner == "ws"
    assert bp.metadata.lints == {"verdict-value-unhandled": "deny"}
    assert bp.operators[0].kind == "automate"


def test_defaults_follow_upstream() -> None:
    bp = validate_blueprint({"id": "x", "flow": step("a")})
    assert bp.schema_version == "0.1.0"
    assert bp.default_agent_kind == "operator"
    assert (bp.strategy.strict_refs, bp.strategy.strict_kind, bp.strategy.strict_binding) == (True, True, False)
    assert bp.agents == [] and bp.metadata.origin.kind == "inline"


def test_all_upstream_top_level_keys_and_our_policy_key_exist() -> None:
    assert set(Blueprint.model_fields) == UPSTREAM_TOP_LEVEL | {"policy"}
    assert len(UPSTREAM_TOP_LEVEL) == 23


def test_unknown_top_level_key_is_refused_with_a_suggestion() -> None:
    diag = only(schema_errors({"id": "x", "flow": step("a"), "agent": []}), "schema")
    assert diag.location.json_path == "$.agent"
    assert "unknown key 'agent'" in diag.message
    assert diag.hint is not None and "did you mean 'agents'" in diag.hint and "default_runner" in diag.hint


def test_unknown_nested_key_names_the_agent_and_the_allowed_keys() -> None:
    raw = blueprint(step("a"), agent("a", profile={"system_promt": "hi"}))
    diag = only(schema_errors(raw), "schema")
    assert diag.location.json_path == "$.agents[0].profile.system_promt"
    assert (diag.location.element, diag.location.name) == ("agent", "a")
    assert diag.hint is not None and "system_prompt" in diag.hint and "worker_binding" in diag.hint


def test_unknown_key_inside_a_tagged_runner_has_a_real_json_path() -> None:
    raw = blueprint(step("a"), runners=[{"name": "ws", "runner": {"backend": "ws_operator", "variant": "v", "x": 1}}])
    diag = only(schema_errors(raw), "schema")
    assert diag.location.json_path == "$.runners[0].runner.x" and diag.location.element is None
    assert diag.hint is not None and "allowed keys here: backend, variant, tools" in diag.hint


def test_every_problem_is_reported_at_once() -> None:
    raw = {"flow": step("a"), "agents": [{"name": "a"}], "check_policy": "loud"}
    paths = {d.location.json_path for d in schema_errors(raw)}
    assert paths == {"$.id", "$.agents[0].kind", "$.check_policy"}


def test_a_non_object_document_is_refused() -> None:
    diag = only(schema_errors(["not", "an", "object"]), "schema")
    assert diag.location.json_path == "$"


def test_retry_extension_becomes_a_retry_policy() -> None:
    raw = blueprint(
        step("a"),
        agent("a", timeout_secs=2.5, retry={"max_attempts": 3, "backoff_ms": 100, "jitter": True, "on": ["blocked"]}),
    )
    spec = validate_blueprint(raw).agents[0]
    assert spec.timeout_secs == 2.5
    assert spec.retry is not None
    assert spec.retry.policy() == RetryPolicy(max_attempts=3, backoff_ms=100, jitter=1.0, on=frozenset({"blocked"}))


@pytest.mark.parametrize(
    ("retry", "fragment"),
    [
        ({"max_attempts": 0}, "max_attempts must be at least 1"),
        ({"backoff_factor": 0.5}, "backoff_factor must be at least 1"),
        ({"on": ["exploded"]}, "'failed', 'blocked' or 'timeout'"),
        ({"tries": 3}, "unknown key 'tries'"),
    ],
)
def test_invalid_retry_is_refused_at_its_path(retry: dict, fragment: str) -> None:
    diags = schema_errors(blueprint(step("a"), agent("a", retry=retry)))
    assert any(d.location.json_path.startswith("$.agents[0].retry") and fragment in d.message for d in diags), [
        d.render() for d in diags
    ]


def test_non_positive_timeout_is_refused() -> None:
    diag = only(schema_errors(blueprint(step("a"), agent("a", timeout_secs=0))), "schema")
    assert diag.location.json_path == "$.agents[0].timeout_secs"


def test_retry_spec_defaults_match_the_engine_policy() -> None:
    assert RetrySpec().policy() == RetryPolicy()


def test_json_schema_is_a_valid_schema_that_agrees_with_the_models() -> None:
    schema = blueprint_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for example in UPSTREAM_EXAMPLES:
        validator.validate(json.loads(example.read_text()))
    assert not validator.is_valid({"id": "x", "flow": {}, "surprise": 1})
    assert not validator.is_valid({"flow": {}})
    assert not validator.is_valid({"id": "x", "flow": {}, "agents": [{"name": "a", "kind": "lua", "lintz": {}}]})
