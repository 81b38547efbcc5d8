"""Reading Blueprint files and expanding `$file` / `$agent_md` references, with path hygiene."""

from __future__ import annotations

import json
from pathlib import Path

import blake3
import pytest

from mlua_swarm.blueprint.agent_md import AgentMdError, parse_agent_md
from mlua_swarm.blueprint.loader import (
    INCLUDES_ENV,
    check_ref_path,
    expand_refs,
    has_refs,
    load_blueprint_source,
    too_deep_at,
)
from mlua_swarm.diagnostics import DiagnosticError

from .helpers import agent, blueprint, only, step

AGENT_MD = """---
name: reviewer
description: "  Reviews one file.  "
model: sonnet
tools: Read, Grep ,  Glob
permissionMode: plan
lints:
  verdict-value-unhandled: deny
---
You review code.
Reply PASS or FAIL.
"""


def write(folder: Path, name: str, text: str) -> Path:
    target = folder / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    return target


def load_errors(target: Path) -> list:
    with pytest.raises(DiagnosticError) as info:
        load_blueprint_source(target)
    return info.value.diagnostics


def expand_errors(raw: object, base: Path) -> list:
    with pytest.raises(DiagnosticError) as info:
        expand_refs(raw, base)
    return info.value.diagnostics


def test_json_and_yaml_files_load_to_the_same_value(tmp_path: Path) -> None:
    raw = blueprint(step("a"), agent("a"), metadata={"description": "2024-01-01"})
    json_file = write(tmp_path, "bp.json", json.dumps(raw))
    yaml_file = write(
        tmp_path / "y",
        "bp.yaml",
        "id: test\nflow: {kind: step, ref: a, in: {op: path, at: $.in}, out: {op: path, at: $.out}}\n"
        "agents:\n  - {name: a, kind: rust_fn, spec: {fn_id: identity}}\nmetadata: {description: 2024-01-01}\n",
    )
    assert load_blueprint_source(json_file) == (raw, tmp_path.resolve())
    assert load_blueprint_source(yaml_file) == (raw, (tmp_path / "y").resolve())


def test_invalid_json_names_line_and_column(tmp_path: Path) -> None:
    target = write(tmp_path, "bad.json", '{\n  "id": "x",\n  "flow": {,}\n}')
    diag = only(load_errors(target), "invalid-json")
    assert diag.location.file == str(target)
    assert diag.location.line == 3
    assert "line 3, column 12" in diag.message


def test_invalid_yaml_names_line_and_column(tmp_path: Path) -> None:
    target = write(tmp_path, "bad.yaml", "id: x\nflow:\n  kind: [seq\n")
    diag = only(load_errors(target), "invalid-yaml")
    assert diag.location.file == str(target)
    assert diag.location.line is not None and "column" in diag.message


def test_missing_and_unsupported_files_are_diagnostics(tmp_path: Path) -> None:
    assert only(load_errors(tmp_path / "nope.json"), "file-not-found").location.file == str(tmp_path / "nope.json")
    assert only(load_errors(write(tmp_path, "bp.txt", "{}")), "unsupported-file").hint is not None


def test_file_ref_is_replaced_by_the_text_anywhere(tmp_path: Path) -> None:
    write(tmp_path, "prompts/review.txt", "Review carefully.\n")
    raw = blueprint(step("a"), agent("a", profile={"system_prompt": {"$file": "prompts/review.txt"}}))
    expanded = expand_refs(raw, tmp_path)
    assert expanded["agents"][0]["profile"]["system_prompt"] == "Review carefully.\n"
    assert has_refs(raw) and not has_refs(expanded)
    assert raw["agents"][0]["profile"]["system_prompt"] == {"$file": "prompts/review.txt"}


def test_an_object_with_file_and_other_keys_is_data(tmp_path: Path) -> None:
    raw = {"default_init_ctx": {"$file": "x.txt", "other": 1}}
    assert expand_refs(raw, tmp_path) == raw


def test_agent_md_becomes_an_agent_and_siblings_win(tmp_path: Path) -> None:
    write(tmp_path, "agents/reviewer.md", AGENT_MD)
    write(tmp_path, "spec.txt", "print('hi')")
    raw = {
        "default_agent_kind": "agent_block",
        "agents": [
            {"$agent_md": "agents/reviewer.md", "spec": {"source": {"$file": "spec.txt"}}},
            {"$agent_md": "agents/reviewer.md", "kind": "operator", "name": "second"},
        ],
    }
    first, second = expand_refs(raw, tmp_path)["agents"]
    body = "You review code.\nReply PASS or FAIL.\n"
    assert first == {
        "name": "reviewer",
        "kind": "agent_block",
        "spec": {"source": "print('hi')"},
        "profile": {
            "system_prompt": body,
            "tools": ["Read", "Grep", "Glob"],
            "version_hash": blake3.blake3(body.encode()).hexdigest(),
            "description": "Reviews one file.",
            "model": "sonnet",
            "extras": {"permissionMode": "plan"},
        },
        "lints": {"verdict-value-unhandled": "deny"},
    }
    assert (second["name"], second["kind"], second["spec"]) == ("second", "operator", None)


def test_agent_md_kind_defaults_to_operator() -> None:
    assert parse_agent_md("---\nname: a\n---\n", kind="operator")["kind"] == "operator"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("name: a\n", "must start with a '---' line"),
        ("---\nname: a\n", "no closing '---'"),
        ("---\ndescription: x\n---\nbody", "needs a 'name'"),
        ("---\n- a\n---\n", "must be a YAML map"),
        ("---\nname: a\ntools: 3\n---\n", "'tools'"),
        ("---\nname: a\nlints: {all: loud}\n---\n", "level 'loud'"),
    ],
)
def test_malformed_agent_md_is_refused(text: str, fragment: str) -> None:
    with pytest.raises(AgentMdError, match=fragment) as info:
        parse_agent_md(text, kind="operator")
    assert info.value.hint


def test_malformed_agent_md_in_a_blueprint_is_located(tmp_path: Path) -> None:
    write(tmp_path, "bad.md", "no front matter")
    diag = only(expand_errors({"agents": [{"$agent_md": "bad.md"}]}, tmp_path), "invalid-agent-md")
    assert diag.location.json_path == "$.agents[0].$agent_md"


@pytest.mark.parametrize("ref", ["../secret.txt", "a/../../secret.txt", "/etc/passwd", "C:\\x.txt", "a\\..\\b", ""])
def test_traversal_and_absolute_paths_are_refused(tmp_path: Path, ref: str) -> None:
    inner = tmp_path / "bp"
    inner.mkdir()
    write(tmp_path, "secret.txt", "secret")
    assert check_ref_path(ref) is not None
    diag = only(expand_errors({"default_init_ctx": {"$file": ref}}, inner), "ref-path-rejected")
    assert diag.location.json_path == "$.default_init_ctx.$file"


def test_a_symlink_leaving_the_folder_is_refused(tmp_path: Path) -> None:
    inner = tmp_path / "bp"
    inner.mkdir()
    write(tmp_path, "secret.txt", "secret")
    (inner / "link.txt").symlink_to(tmp_path / "secret.txt")
    only(expand_errors({"x": {"$file": "link.txt"}}, inner), "ref-path-rejected")


def test_missing_reference_names_every_searched_folder(tmp_path: Path) -> None:
    raw = {"blueprint_ref_includes": ["shared"], "x": {"$file": "missing.txt"}}
    diag = only(expand_errors(raw, tmp_path), "ref-not-found")
    assert str(tmp_path) in diag.message and str(tmp_path / "shared") in diag.message
    assert diag.hint is not None and INCLUDES_ENV in diag.hint


def test_include_cascade_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base, declared, env_dir, cli_dir = (tmp_path / n for n in ("base", "base/shared", "env", "cli"))
    for folder in (base, declared, env_dir, cli_dir):
        folder.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv(INCLUDES_ENV, str(env_dir))
    write(cli_dir, "only-cli.txt", "cli")
    write(env_dir, "env-and-cli.txt", "env")
    write(cli_dir, "env-and-cli.txt", "cli")
    write(declared, "env-and-cli.txt", "declared")
    write(base, "everywhere.txt", "base")
    write(declared, "everywhere.txt", "declared")
    raw = {
        "blueprint_ref_includes": ["shared"],
        "a": {"$file": "only-cli.txt"},
        "b": {"$file": "env-and-cli.txt"},
        "c": {"$file": "everywhere.txt"},
    }
    out = expand_refs(raw, base, includes=[cli_dir])
    assert (out["a"], out["b"], out["c"]) == ("cli", "declared", "base")
    monkeypatch.delenv(INCLUDES_ENV)
    write(env_dir, "env-only.txt", "env")
    assert expand_errors({"x": {"$file": "env-only.txt"}}, base)[0].code == "ref-not-found"


def test_all_unresolved_references_are_reported_together(tmp_path: Path) -> None:
    raw = {"a": {"$file": "one.txt"}, "b": [{"$file": "../two.txt"}], "agents": [{"$agent_md": "three.md"}]}
    diags = expand_errors(raw, tmp_path)
    assert [(d.code, d.location.json_path) for d in diags] == [
        ("ref-not-found", "$.a.$file"),
        ("ref-path-rejected", "$.b[0].$file"),
        ("ref-not-found", "$.agents[0].$agent_md"),
    ]


LUA_BP = """local F = require "flow_dsl"
return {
  id = "lua-bp",
  flow = F.step{agent = "a", input = F.p("$.in"), out = F.p("$.out")},
  agents = { { name = "a", kind = "rust_fn", spec = { fn_id = "identity" } } },
}
"""


def test_bp_lua_builds_the_blueprint_value(tmp_path: Path) -> None:
    target = write(tmp_path, "flow.bp.lua", LUA_BP)
    warnings: list = []
    raw, base = load_blueprint_source(target, warnings=warnings)
    assert base == tmp_path.resolve()
    assert raw["flow"] == step("a", out="$.out", at="$.in")
    assert raw["agents"] == [agent("a")]
    assert warnings == []


def test_bp_lua_error_is_a_located_diagnostic(tmp_path: Path) -> None:
    target = write(tmp_path, "broken.bp.lua", 'local x = 1\nerror("no flow here")\n')
    diag = load_errors(target)[0]
    assert (diag.location.file, diag.location.line) == (str(target), 2)


def test_deeply_nested_documents_are_refused_before_any_walk(tmp_path: Path) -> None:
    deep: list = []
    for _ in range(5000):
        deep = [deep]
    diag = only(expand_errors({"id": "x", "default_init_ctx": {"v": deep}}, tmp_path), "document-too-deep")
    assert diag.location.json_path is not None and diag.location.json_path.startswith("$.default_init_ctx.v[0][0]")
    assert too_deep_at({"a": [[1]]}, limit=3) is None
    assert too_deep_at({"a": [[1]]}, limit=2) == "$.a[0][0]"


@pytest.mark.parametrize("entry", ["..", "../shared", "/etc"])
def test_declared_include_folders_may_not_leave_the_blueprint_folder(tmp_path: Path, entry: str) -> None:
    inner = tmp_path / "bp"
    inner.mkdir()
    write(tmp_path, "secret.txt", "secret")
    write(tmp_path, "shared/secret.txt", "secret")
    diags = expand_errors({"blueprint_ref_includes": [entry], "x": {"$file": "secret.txt"}}, inner)
    assert [(d.code, d.location.json_path) for d in diags] == [
        ("ref-path-rejected", "$.blueprint_ref_includes[0]"),
        ("ref-not-found", "$.x.$file"),
    ]
