from typing import Any

import jinja2
import pytest

from mlua_swarm.worker.kinds import InvalidAgentSpec
from mlua_swarm.worker.streams import StreamMode
from mlua_swarm.worker.templates import (
    MISSING,
    MissingPlaceholder,
    OutputDecl,
    SubprocessDef,
    bind_template,
    normalize_plain,
    render_command,
    render_system_prompt,
    resolve_pointer,
    substitute,
)


def bp(*templates: dict[str, Any]) -> dict[str, Any]:
    return {"id": "t", "flow": {}, "subprocesses": list(templates)}


def test_substitution_is_single_pass_and_keeps_literal_braces() -> None:
    values = {"prompt": "say {model}", "model": "m1"}
    assert substitute("{prompt}|{model}", values) == "say {model}|m1"
    assert substitute('{"p": "{prompt}", "x": {}}', values) == '{"p": "say {model}", "x": {}}'
    assert substitute("{Upper} {a-b} {{model}}", values) == "{Upper} {a-b} {m1}"


def test_a_placeholder_without_a_value_raises_with_the_hint() -> None:
    with pytest.raises(MissingPlaceholder, match=r"\{model\} has no value: set profile.model"):
        substitute("--model {model}", {}, {"model": "set profile.model"})


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"name": "x", "argv": []}, "'argv' must be a non-empty list"),
        ({"name": "x", "argv": ["a", "{prompts}"]}, r"unknown placeholder\(s\) \{prompts\}"),
        ({"name": "x", "argv": ["a"], "env": {"K": "{nope}"}}, r"\{nope\}"),
        ({"name": "x", "argv": ["a"], "stdin": "{sytem}"}, r"\{sytem\}"),
        ({"name": "x", "argv": ["a"], "output": {}, "stream_mode": "ndjson_lines"}, "cannot both be set"),
        ({"name": "x", "argv": ["a"], "output": {"format": "yaml"}}, 'output.format must be "json"'),
        ({"name": "x", "argv": ["a"], "output": {"result_ptr": "payload"}}, "must be a JSON pointer"),
        ({"name": "x", "argv": ["a"], "output": {"ok_from": "ok"}}, "output.ok_from must be a JSON pointer"),
        ({"name": "x", "argv": ["a"], "output": {"stats": {"usage_ptr": "u"}}}, "usage_ptr must be a JSON pointer"),
        ({"name": "x", "argv": ["a"], "stream_mode": "jsonl"}, "unknown stream_mode 'jsonl'"),
        ({"name": "x", "argv": ["a"], "shell": True}, r"unknown key\(s\) shell"),
    ],
)
def test_compile_time_checks_name_the_template_and_the_problem(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidAgentSpec, match=message) as info:
        SubprocessDef.from_json(entry)
    assert "subprocess template 'x'" in str(info.value) or "argv" in str(info.value)


def test_a_misspelt_placeholder_gets_a_suggestion() -> None:
    with pytest.raises(InvalidAgentSpec) as info:
        SubprocessDef.from_json({"name": "x", "argv": ["echo", "{promt}"]})
    assert info.value.hint is not None and info.value.hint.startswith("did you mean {prompt}?")


def test_a_valid_template_parses_with_its_references() -> None:
    t = SubprocessDef.from_json(
        {
            "name": "cli",
            "argv": ["tool", "--model", "{model}", '{"json": true}'],
            "stdin": "{prompt}",
            "env": {"SYS": "{system_file}"},
            "cwd": "{work_dir}",
            "output": {"format": "json", "result_ptr": "/r", "ok_from": "exit_code", "stats": {"model_ptr": "/m"}},
        }
    )
    assert t.referenced() == {"model", "prompt", "system_file", "work_dir"}
    assert t.output == OutputDecl("json", "/r", "exit_code", None, "/m", None)
    assert SubprocessDef.from_json({"name": "s", "argv": ["a"], "stream_mode": "sse_events"}).stream_mode is (
        StreamMode.SSE_EVENTS
    )


def test_binding_applies_override_precedence() -> None:
    blueprint = bp({"name": "cli", "argv": ["t", "{model}", "{tools_csv}"], "cwd": "/def"})
    profile = {"model": "p-model", "tools": ["a", "b"], "system_prompt": "S"}
    bound = bind_template({"backend": "subprocess", "template": "cli"}, blueprint, profile)
    assert (bound.model, bound.tools_csv, bound.cwd, bound.system_prompt) == ("p-model", "a,b", "/def", "S")
    overrides = {"model": "o-model", "tools": ["c"], "cwd": "/o"}
    bound = bind_template({"backend": "subprocess", "template": "cli", "overrides": overrides}, blueprint, profile)
    assert (bound.model, bound.tools_csv, bound.cwd) == ("o-model", "c", "/o")
    bound = bind_template({"backend": "subprocess", "template": "cli", "overrides": {"tools": []}}, blueprint, profile)
    assert bound.tools_csv == "a,b"
    command = render_command(bound, {"model": "m", "tools_csv": "a,b"})
    assert command.argv == ["t", "m", "a,b"] and command.stdin is None and command.cwd == "/def"


def test_binding_an_unknown_template_lists_the_known_ones() -> None:
    with pytest.raises(InvalidAgentSpec, match=r"'missing' is not declared \(known: a\)") as info:
        bind_template({"backend": "subprocess", "template": "missing"}, bp({"name": "a", "argv": ["x"]}), {})
    assert info.value.hint is not None and '"subprocesses"' in info.value.hint


def test_pointers_follow_rfc_6901() -> None:
    doc = {"a": [{"b/c": 1, "m~n": 2}], "": 3}
    assert resolve_pointer(doc, "/a/0/b~1c") == 1
    assert resolve_pointer(doc, "/a/0/m~0n") == 2
    assert resolve_pointer(doc, "/") == 3
    assert resolve_pointer(doc, "") is doc
    assert resolve_pointer(doc, "/a/1") is MISSING
    assert resolve_pointer(doc, "/a/01") is MISSING
    assert resolve_pointer(doc, "/a/0/b~1c/x") is MISSING


def test_plain_without_declaration_is_json_or_raw_and_ok_from_the_exit_code() -> None:
    assert normalize_plain(b' {"a": 1}\n', "", True, None) == ({"a": 1}, True, {})
    assert normalize_plain(b"42", "", False, None) == (42, False, {})
    assert normalize_plain(b"hello\n\n", "warn", True, None) == ({"raw": "hello", "stderr": "warn"}, True, {})


def test_declared_json_format_fails_on_prose_even_with_exit_zero() -> None:
    value, ok, _ = normalize_plain(b"prose", "", True, OutputDecl(format="json"))
    assert not ok and value["raw"] == "prose" and "parse_error" in value


def test_result_ptr_extracts_and_fails_loudly_when_missing() -> None:
    decl = OutputDecl(result_ptr="/payload")
    assert normalize_plain(b'{"payload": {"x": 1}}', "", True, decl)[:2] == ({"x": 1}, True)
    value, ok, _ = normalize_plain(b'{"other": 1}', "e", True, decl)
    assert not ok and value["error"].startswith("result_ptr '/payload' not found") and value["stderr"] == "e"


def test_ok_from_a_pointer_accepts_only_boolean_true() -> None:
    decl = OutputDecl(ok_from="/ok")
    assert normalize_plain(b'{"ok": true}', "", False, decl)[1] is True
    assert normalize_plain(b'{"ok": "true"}', "", True, decl)[1] is False
    assert normalize_plain(b'{"ok": 1}', "", True, decl)[1] is False
    assert normalize_plain(b"{}", "", True, decl)[1] is False


def test_stats_pointers_accept_partial_and_openai_style_usage() -> None:
    decl = OutputDecl(usage_ptr="/u", model_ptr="/m", num_turns_ptr="/n")
    _, _, stats = normalize_plain(b'{"u": {"total_tokens": 9}, "m": "gpt", "n": 3}', "", True, decl)
    assert stats == {"usage": {"total_tokens": 9}, "model": "gpt", "num_turns": 3}
    _, _, stats = normalize_plain(b'{"u": {"prompt_tokens": 2, "completion_tokens": 5}}', "", True, decl)
    assert stats == {"usage": {"input_tokens": 2, "output_tokens": 5}}
    assert normalize_plain(b'{"u": 5, "n": "x"}', "", True, decl)[2] == {}


def test_system_prompt_renders_prompt_keys_or_the_directive_strictly() -> None:
    assert render_system_prompt("Review {{ file }} now", {"file": "a.py"}) == "Review a.py now"
    assert render_system_prompt("Do: {{ directive }}", "the thing") == "Do: the thing"
    assert render_system_prompt("plain {text}", {"x": 1}) == "plain {text}"
    with pytest.raises(jinja2.UndefinedError, match="'missing' is undefined"):
        render_system_prompt("{{ missing }}", {"x": 1})
