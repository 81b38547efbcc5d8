"""The compiler: each upstream lint code from a minimal Blueprint, and what a clean compile produces."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mlua_swarm.blueprint.compiler import compile_blueprint
from mlua_swarm.core.config import RetryPolicy
from mlua_swarm.core.engine import Engine, TaskSpec, VerdictContract
from mlua_swarm.diagnostics import Level
from mlua_swarm.flow.nodes import Seq
from mlua_swarm.tokens import CapToken
from mlua_swarm.worker import kinds
from mlua_swarm.worker.adapter import WorkerInvocation

from ..conftest import run_one
from .helpers import (
    CHECKER_PART,
    agent,
    blueprint,
    branch,
    codes,
    compile_errors,
    compile_ok,
    eq,
    fixture,
    lit,
    only,
    path,
    seq,
    step,
)

CHECKER = CHECKER_PART


def checker_flow(*conds: dict[str, Any]) -> dict[str, Any]:
    return seq(step("checker", out="$.check"), *(branch(c) for c in conds))


# -- a clean compile ----------------------------------------------------------------------------------


async def shout(inv: WorkerInvocation) -> str:
    return str(inv.input).upper()


def test_clean_compile_builds_agents_with_their_policies() -> None:
    raw = blueprint(
        seq(step("a", out="$.a"), step("b", out="$.b.deep")),
        agent("a", timeout_secs=3, retry={"max_attempts": 2}, verdict={"values": ["OK"]}),
        {"name": "b", "kind": "rust_fn", "spec": {"fn_id": "shout"}, "meta": {"projection_name": "loud"}},
    )
    compiled = compile_ok(raw, fns={"identity": shout, "shout": shout})
    assert isinstance(compiled.flow, Seq)
    assert compiled.raw == raw and compiled.blueprint.id == "test"
    a, b = compiled.agents["a"], compiled.agents["b"]
    assert (a.name, a.kind, a.timeout_secs) == ("a", "rust_fn", 3)
    assert a.retry == RetryPolicy(max_attempts=2)
    assert a.verdict == VerdictContract("body", ("OK",))
    assert (b.retry, b.verdict, b.raw["spec"]) == (None, None, {"fn_id": "shout"})
    assert compiled.step_names.canonical_of("b") == "loud"
    assert compiled.step_names.resolve("b") == "loud"
    assert compiled.step_names.canonical_of("a") == "a"
    assert codes(compiled.diagnostics) == ["verdict-contract-never-read"]


async def test_a_compiled_spawner_runs_on_the_engine(engine: Engine, op: CapToken) -> None:
    compiled = compile_ok(blueprint(step("b"), agent("b", spec={"fn_id": "shout"})), fns={"shout": shout})
    outcome = await run_one(engine, op, compiled.agents["b"].spawner, TaskSpec("b", "hello"))
    assert (outcome.kind, outcome.value) == ("pass", "HELLO")


def test_python_agents_import_from_the_blueprint_folder(tmp_path: Path) -> None:
    (tmp_path / "bp_agents_mod.py").write_text("def run(inv):\n    return 1\n")
    raw = blueprint(step("p"), {"name": "p", "kind": "python", "spec": {"callable": "bp_agents_mod:run"}})
    assert compile_ok(raw, tmp_path).agents["p"].kind == "python"


def test_references_are_expanded_before_checking(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("---\nname: a\n---\nbody\n")
    raw = blueprint(step("a"), {"$agent_md": "a.md", "kind": "rust_fn", "spec": {"fn_id": "identity"}})
    compiled = compile_ok(raw, tmp_path)
    assert compiled.blueprint.agents[0].profile is not None
    assert compiled.blueprint.agents[0].profile.system_prompt == "body\n"
    assert compiled.raw["agents"][0]["name"] == "a"


def test_source_is_stamped_on_diagnostics() -> None:
    diags = compile_errors(blueprint(step("ghost")), source="flows/x.json")
    assert {d.location.file for d in diags} == {"flows/x.json"}


# -- input stage ----------------------------------------------------------------------------------------


def test_schema_and_flow_errors_are_reported_together() -> None:
    raw = blueprint({"kind": "loop_", "x": 1}, agent("a"), strategy={"strict_refs": "yes"})
    diags = compile_errors(raw)
    assert only(diags, "schema").location.json_path == "$.strategy.strict_refs"
    assert only(diags, "invalid-flow").location.json_path == "$.flow.kind"


def test_invalid_flow_carries_the_parser_path_and_hint() -> None:
    raw = blueprint(seq(step("a"), {"kind": "step", "ref": "a", "in": path("$.x"), "out": "$.y"}), agent("a"))
    diag = only(compile_errors(raw), "invalid-flow")
    assert diag.location.json_path == "$.flow.children[1].out"


# -- upstream compile checks ------------------------------------------------------------------------------


def test_bound_agent_resolution() -> None:
    raw = blueprint(
        step("a"),
        agent("a", runner_ref="wss"),
        agent("b", runner={"backend": "subprocess", "template": "claude"}),
        runners=[{"name": "ws", "runner": {"backend": "ws_operator", "variant": "v"}}],
        default_runner="nope",
    )
    diags = [d for d in compile_errors(raw) if d.code == "bound-agent-resolution"]
    assert [d.location.json_path for d in diags] == ["$.default_runner", "$.agents[0].runner_ref", "$.agents[1]"]
    assert diags[1].hint is not None and "did you mean 'ws'" in diags[1].hint


def test_runner_cascade_is_resolved_per_agent() -> None:
    raw = blueprint(
        seq(step("a"), step("b"), step("c")),
        agent("a"),
        agent("b", runner_ref="other"),
        agent("c", profile={"worker_binding": "coder", "tools": ["Read"]}),
        runners=[
            {"name": "ws", "runner": {"backend": "ws_operator", "variant": "v"}},
            {"name": "other", "runner": {"backend": "agent_block_in_process"}},
        ],
        default_runner="ws",
    )
    agents = compile_ok(raw).agents
    assert agents["a"].runner is not None and agents["a"].runner.backend == "ws_operator"
    assert agents["b"].runner is not None and agents["b"].runner.backend == "agent_block_in_process"
    runner_c = agents["c"].runner
    assert runner_c is not None and runner_c.model_dump() == {
        "backend": "ws_claude_code",
        "variant": "coder",
        "tools": ["Read"],
    }


def test_removed_spawner_hint() -> None:
    raw = blueprint(step("a"), agent("a"), spawner_hints={"layers": ["main_ai", "operator_delegate", "unknown"]})
    diag = only(compile_errors(raw), "removed-spawner-hint")
    assert diag.location.json_path == "$.spawner_hints.layers[1]"


def test_unresolved_operator_ref() -> None:
    raw = blueprint(
        step("op"),
        {"name": "op", "kind": "operator", "spec": {"operator_ref": "seat-b"}},
        operators=[{"name": "seat-a"}],
    )
    diag = only(compile_errors(raw), "unresolved-operator-ref")
    assert (diag.location.name, diag.location.json_path) == ("op", "$.agents[0].spec.operator_ref")
    assert diag.hint is not None and "seat-a" in diag.hint


def test_unresolved_meta_ref_on_agents_and_static_step_meta() -> None:
    step_with_meta = {"kind": "step", "ref": "a", "in": lit({"$step_meta": {"ref": "ghost"}}), "out": path("$.o")}
    raw = blueprint(step_with_meta, agent("a", meta={"meta_ref": "shard"}), metas=[{"name": "shared", "ctx": {}}])
    diags = [d for d in compile_errors(raw) if d.code == "unresolved-meta-ref"]
    assert [d.location.json_path for d in diags] == ["$.agents[0].meta.meta_ref", "$.flow.in.value.$step_meta.ref"]
    assert diags[0].hint is not None and "did you mean 'shared'" in diags[0].hint


def test_unresolved_audit_agent() -> None:
    raw = blueprint(step("a"), agent("a"), audits=[{"agent": "auditor", "steps": ["*"]}])
    diag = only(compile_errors(raw), "unresolved-audit-agent")
    assert diag.location.json_path == "$.audits[0].agent"


def test_duplicate_agent_name() -> None:
    diag = only(compile_errors(blueprint(step("a"), agent("a"), agent("a"))), "duplicate-agent-name")
    assert diag.location.json_path == "$.agents[1].name"


def test_unknown_agent_kind_suggests_a_kind() -> None:
    raw = blueprint(step("a"), {"name": "a", "kind": "pythn", "spec": {}})
    diag = only(compile_errors(raw), "unknown-agent-kind")
    assert (diag.location.name, diag.location.json_path) == ("a", "$.agents[0].kind")
    assert diag.hint is not None and "did you mean 'python'" in diag.hint and "rust_fn" in diag.hint


@pytest.fixture
def ray_not_built(monkeypatch: pytest.MonkeyPatch) -> None:
    """A kind the schema names whose implementation this installation lacks (ray's, hidden)."""
    monkeypatch.delitem(kinds._BUILTIN, "ray")
    monkeypatch.delitem(kinds._LOADED, "ray", raising=False)


@pytest.mark.usefixtures("ray_not_built")
def test_a_known_but_unavailable_kind_says_so() -> None:
    diag = only(compile_errors(blueprint(step("r"), {"name": "r", "kind": "ray"})), "unknown-agent-kind")
    assert "not available in this installation" in diag.message


@pytest.mark.usefixtures("ray_not_built")
def test_lenient_kind_strategy_drops_the_agent_with_a_warning() -> None:
    raw = blueprint(seq(), agent("a"), {"name": "r", "kind": "ray"}, strategy={"strict_kind": False})
    compiled = compile_ok(raw)
    assert set(compiled.agents) == {"a"}
    assert only(compiled.diagnostics, "unknown-agent-kind").level is Level.WARN


def test_invalid_agent_spec_keeps_the_kind_hint() -> None:
    raw = blueprint(seq(step("a"), step("b")), agent("a", spec={}), agent("b", spec={"fn_id": "nope"}))
    diags = [d for d in compile_errors(raw) if d.code == "invalid-agent-spec"]
    assert [d.location.name for d in diags] == ["a", "b"]
    assert all(d.hint and d.location.json_path and d.location.json_path.endswith(".spec") for d in diags)
    assert "--fn nope=module:attr" in (diags[1].hint or "")


def test_unresolved_agent_ref_is_strict_by_default() -> None:
    raw = blueprint(seq(step("a"), branch(eq("$.x", 1)), step("chcker")), agent("a"), agent("checker"))
    diag = only(compile_errors(raw), "unresolved-agent-ref")
    assert diag.location.json_path == "$.flow.children[2].ref"
    assert diag.hint is not None and "did you mean 'checker'" in diag.hint


def test_unresolved_agent_ref_is_a_warning_without_strict_refs() -> None:
    compiled = compile_ok(blueprint(step("ghost"), strategy={"strict_refs": False}))
    assert only(compiled.diagnostics, "unresolved-agent-ref").level is Level.WARN


def test_verdict_channel_mismatch() -> None:
    diag = only(compile_errors(blueprint(checker_flow(eq("$.check", "PASS")), CHECKER)), "verdict-channel-mismatch")
    assert (diag.location.element, diag.location.name) == ("step", "checker")
    assert diag.location.json_path == "$.flow.children[1].cond"


def test_verdict_value_not_in_contract_also_inside_and_or_not_and_in() -> None:
    cond = {
        "op": "and",
        "args": [
            {"op": "not", "arg": eq('$.check.parts["verdict"]', "PASS")},
            {"op": "in", "needle": path("$.check.parts.verdict"), "haystack": lit(["FAIL", "BLOKED"])},
        ],
    }
    diag = only(compile_errors(blueprint(checker_flow(cond), CHECKER)), "verdict-value-not-in-contract")
    assert "'BLOKED'" in diag.message
    assert diag.location.json_path == "$.flow.children[1].cond.args[1]"
    assert diag.hint is not None and "did you mean 'BLOCKED'" not in diag.hint and "PASS, FAIL" in diag.hint


def test_contract_mismatches_in_loop_conditions_are_found() -> None:
    loop = {"kind": "loop", "counter": path("$.n"), "max": 2, "cond": eq("$.check.parts.verdict", 1), "body": seq()}
    raw = blueprint(seq(step("checker", out="$.check"), loop), CHECKER)
    assert "'1'" in only(compile_errors(raw), "verdict-value-not-in-contract").message


def test_unhandled_verdict_value_is_info_by_default_and_a_warning_when_asked() -> None:
    compiled = compile_ok(blueprint(checker_flow(eq("$.check.parts.verdict", "PASS")), CHECKER))
    diag = only(compiled.diagnostics, "verdict-value-unhandled", Level.INFO)
    assert "'FAIL'" in diag.message
    assert diag.location.json_path == "$.flow.children[0]"
    warned = blueprint(
        checker_flow(eq("$.check.parts.verdict", "PASS")),
        CHECKER,
        metadata={"lints": {"verdict-value-unhandled": "warn"}},
    )
    only(compile_ok(warned).diagnostics, "verdict-value-unhandled", Level.WARN)


@pytest.mark.parametrize(
    ("agent_lints", "bp_lints", "strict", "expected"),
    [
        (None, {"verdict-value-unhandled": "deny"}, False, Level.ERROR),
        (None, {"category:suspicious": "deny"}, False, Level.ERROR),
        ({"verdict-value-unhandled": "allow"}, {"verdict-value-unhandled": "deny"}, False, None),
        ({"all": "deny"}, None, False, Level.ERROR),
        ({"verdict-value-unhandled": "allow"}, None, True, Level.ERROR),
    ],
)
def test_unhandled_verdict_lint_settings(
    agent_lints: dict[str, str] | None, bp_lints: dict[str, str] | None, strict: bool, expected: Level | None
) -> None:
    checker = {**CHECKER, "lints": agent_lints} if agent_lints else CHECKER
    raw = blueprint(checker_flow(eq("$.check.parts.verdict", "PASS")), checker, metadata={"lints": bp_lints})
    if expected is Level.ERROR:
        only(compile_errors(raw, strict=strict), "verdict-value-unhandled", Level.ERROR)
    else:
        assert "verdict-value-unhandled" not in codes(compile_ok(raw, strict=strict).diagnostics)


def test_strict_verdict_handling_metadata_denies() -> None:
    raw = blueprint(
        checker_flow(eq("$.check.parts.verdict", "PASS")), CHECKER, metadata={"strict_verdict_handling": True}
    )
    only(compile_errors(raw), "verdict-value-unhandled", Level.ERROR)


def test_every_declared_value_handled_compiles_clean() -> None:
    cond = {"op": "in", "needle": path("$.check.parts.verdict"), "haystack": lit(["PASS", "FAIL"])}
    assert compile_ok(blueprint(checker_flow(cond), CHECKER), strict=True).diagnostics == []


def test_verdict_contract_never_read() -> None:
    compiled = compile_ok(blueprint(checker_flow(), CHECKER))
    diag = only(compiled.diagnostics, "verdict-contract-never-read", Level.INFO)
    assert diag.location.name == "checker"
    assert "verdict-value-unhandled" not in codes(compiled.diagnostics)


def test_step_naming_collision_with_a_declared_projection_name() -> None:
    raw = blueprint(
        seq(step("a", out="$.x"), step("b", out="$.y")), agent("a"), agent("b", meta={"projection_name": "a"})
    )
    diag = only(compile_errors(raw), "step-naming-collision")
    assert "'a'" in diag.message and diag.location.name == "b"


def test_undeclared_naming_clash_is_only_information() -> None:
    compiled = compile_ok(blueprint(seq(step("a", out="$.r"), step("b", out="$.r")), agent("a"), agent("b")))
    assert only(compiled.diagnostics, "step-naming-collision").level is Level.INFO
    assert compiled.step_names.resolve("r") == "a"


@pytest.mark.parametrize("template", ["/abs/{task_id}", "a/../{task_id}", "tasks/ctx", " "])
def test_invalid_projection_placement(template: str) -> None:
    raw = blueprint(step("a"), agent("a"), projection_placement={"dir_template": template})
    diag = only(compile_errors(raw), "invalid-projection-placement")
    assert diag.location.json_path == "$.projection_placement.dir_template"


def test_lint_settings_are_checked() -> None:
    raw = blueprint(
        step("a"),
        agent("a", lints={"verdict-value-unhandeld": "deny"}),
        metadata={"lints": {"duplicate-agent-name": "allow"}},
    )
    diags = compile_ok(raw).diagnostics
    unknown = only(diags, "unknown-lint-kind", Level.WARN)
    assert unknown.location.json_path == "$.agents[0].lints"
    assert unknown.hint is not None and "did you mean 'verdict-value-unhandled'" in unknown.hint
    assert only(diags, "non-suppressible-lint", Level.WARN).location.json_path == "$.metadata.lints"


def test_all_compile_problems_are_reported_at_once() -> None:
    raw = blueprint(
        seq(step("ghost"), step("a")),
        agent("a"),
        agent("a"),
        audits=[{"agent": "nobody"}],
        spawner_hints={"layers": ["operator_delegate"]},
    )
    errors = [d for d in compile_errors(raw) if d.level is Level.ERROR]
    assert set(codes(errors)) == {
        "unresolved-agent-ref",
        "duplicate-agent-name",
        "unresolved-audit-agent",
        "removed-spawner-hint",
    }


def test_upstream_example_b_is_checked_against_its_contract() -> None:
    raw = fixture("upstream_b_verdict_loop.json")
    compiled = compile_ok(raw)
    assert codes(compiled.diagnostics) == []
    assert set(compiled.agents) == {a["name"] for a in raw["agents"]}, "operator agents compile without a server"
    raw["flow"]["children"][2]["cond"]["rhs"]["value"] = "BLOCKED"
    assert "verdict-value-not-in-contract" in codes(compile_errors(raw))


def test_fns_default_to_the_builtin_registry(tmp_path: Path) -> None:
    compiled = compile_blueprint(blueprint(step("a"), agent("a")), base_dir=tmp_path)
    assert compiled.agents["a"].kind == "rust_fn"


def test_an_agent_module_that_fails_to_import_is_a_diagnostic(tmp_path: Path) -> None:
    (tmp_path / "bp_broken_mod.py").write_text("raise RuntimeError('boom at import')\n")
    raw = blueprint(step("p"), {"name": "p", "kind": "python", "spec": {"callable": "bp_broken_mod:run"}})
    diag = only(compile_errors(raw, tmp_path), "invalid-agent-spec")
    assert "RuntimeError: boom at import" in diag.message
