"""Slice B: hostile or clumsy input gives a diagnostic and exit 2, in bounded time and memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mlua_swarm.blueprint.loader import load_blueprint_source
from mlua_swarm.core.config import CheckPolicy
from mlua_swarm.core.engine import Engine, TaskSpec
from mlua_swarm.core.projection import Projection
from mlua_swarm.diagnostics import DiagnosticError
from mlua_swarm.errors import DispatchFailed
from mlua_swarm.paths import PathRefused, name_problem, under_root
from mlua_swarm.worker.adapter import InProcSpawner, WorkerInvocation

from ..conftest import mse_env

BP = {
    "id": "t",
    "flow": {"kind": "step", "ref": "a", "in": {"op": "path", "at": "$.x"}, "out": {"op": "path", "at": "$.y"}},
    "agents": [{"name": "a", "kind": "rust_fn", "spec": {"fn_id": "identity"}}],
}


def mse(args: list[str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The real `mse`, bounded in time: a hang fails the test instead of stalling the suite."""
    return subprocess.run(
        [sys.executable, "-m", "mlua_swarm", *args],
        capture_output=True,
        text=True,
        env=mse_env({"MSE_HOME": str(cwd / "home")}),
        cwd=cwd,
        timeout=timeout,
    )


def assert_diagnostic(proc: subprocess.CompletedProcess[str], code: str) -> None:
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert f"[{code}]" in proc.stderr, proc.stderr[-2000:]


def load_diagnostic(path: Path) -> str:
    with pytest.raises(DiagnosticError) as info:
        load_blueprint_source(path)
    return "\n".join(d.render() for d in info.value.diagnostics)


BOMB = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
id: bomb
flow: {kind: seq, children: []}
"""


def test_a_yaml_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    (tmp_path / "bomb.yaml").write_text(BOMB)
    proc = mse(["run", "bomb.yaml", "--ephemeral"], tmp_path, timeout=30)
    assert_diagnostic(proc, "invalid-yaml")
    assert "alias" in proc.stderr


def test_small_yaml_aliases_still_work(tmp_path: Path) -> None:
    (tmp_path / "ok.yaml").write_text("id: ok\nmeta: &m {a: 1}\nmetas: [*m, *m]\nflow: {kind: seq, children: []}\n")
    raw, _ = load_blueprint_source(tmp_path / "ok.yaml")
    assert raw["metas"] == [{"a": 1}, {"a": 1}]


def test_a_recursive_yaml_alias_is_refused(tmp_path: Path) -> None:
    (tmp_path / "loop.yaml").write_text("a: &a [1, *a]\n")
    assert "alias" in load_diagnostic(tmp_path / "loop.yaml")


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("id: x\n1: one\n", "keys must be strings"),
        ("id: x\n? [a, b]\n: pair\n", "key"),
        ("id: x\nblob: !!binary aGVsbG8=\n", "binary"),
        ("id: x\nset: !!set {a, b}\n", "set"),
        ("id: x\nwhen: !!timestamp 2001-12-14\n", "timestamp"),
    ],
)
def test_yaml_that_is_not_json_data_is_a_diagnostic(tmp_path: Path, text: str, words: str) -> None:
    (tmp_path / "bp.yaml").write_text(text)
    proc = mse(["run", "bp.yaml", "--ephemeral"], tmp_path)
    assert_diagnostic(proc, "invalid-yaml")
    assert words in proc.stderr


def test_init_that_is_not_an_object_is_a_diagnostic(tmp_path: Path) -> None:
    (tmp_path / "bp.json").write_text(json.dumps(BP))
    assert_diagnostic(mse(["run", "bp.json", "--ephemeral", "--init", "5"], tmp_path), "invalid-argument")


def test_deeply_nested_init_is_a_diagnostic(tmp_path: Path) -> None:
    (tmp_path / "bp.json").write_text(json.dumps(BP))
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    assert_diagnostic(mse(["run", "bp.json", "--ephemeral", "--init", "@deep.json"], tmp_path), "invalid-json")


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_a_huge_integer_in_a_blueprint_is_a_diagnostic(tmp_path: Path, suffix: str) -> None:
    (tmp_path / f"bp{suffix}").write_text('{"id": "t", "n": ' + "9" * 5000 + "}")
    proc = mse(["run", f"bp{suffix}", "--ephemeral"], tmp_path)
    assert_diagnostic(proc, "invalid-json" if suffix == ".json" else "invalid-yaml")
    assert "digits" in proc.stderr


def test_an_absurd_limit_is_a_diagnostic(tmp_path: Path) -> None:
    proc = mse(["runs", "list", "--limit", "99999999999999999999"], tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "--limit" in proc.stderr


@pytest.mark.parametrize("value", ["-1", "0", "nan", "inf"])
def test_a_timeout_that_is_not_a_positive_number_is_refused(tmp_path: Path, value: str) -> None:
    (tmp_path / "bp.json").write_text(json.dumps(BP))
    proc = mse(["run", "bp.json", "--ephemeral", "--init", '{"x": 1}', f"--timeout={value}"], tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "--timeout" in proc.stderr


def test_a_blueprint_linked_to_dev_zero_hits_the_size_cap(tmp_path: Path) -> None:
    os.symlink("/dev/zero", tmp_path / "zero.json")
    assert_diagnostic(mse(["run", "zero.json", "--ephemeral"], tmp_path, timeout=30), "file-too-large")


def test_an_oversized_blueprint_is_refused(tmp_path: Path) -> None:
    from mlua_swarm.textparse import MAX_INPUT_BYTES

    big = tmp_path / "big.json"
    big.write_text('{"id": "' + "x" * MAX_INPUT_BYTES + '"}')
    assert "[file-too-large]" in load_diagnostic(big)


def test_invalid_utf8_is_reported_as_such(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_bytes(b'{"id": "\xff"}')
    rendered = load_diagnostic(tmp_path / "bad.json")
    assert "[invalid-utf8]" in rendered and "0xff at offset 8" in rendered and "permission" not in rendered


def test_an_init_file_with_invalid_utf8_is_a_diagnostic(tmp_path: Path) -> None:
    (tmp_path / "bp.json").write_text(json.dumps(BP))
    (tmp_path / "init.json").write_bytes(b'{"x": "\xff"}')
    assert_diagnostic(mse(["run", "bp.json", "--ephemeral", "--init", "@init.json"], tmp_path), "invalid-utf8")


# ── names that become paths ──────────────────────────────────────────────────


@pytest.mark.parametrize(
    "name",
    [
        "",
        "/etc/passwd",
        "../up",
        "a/../../b",
        "C:evil",
        "C:\\evil",
        "\\\\server\\share",
        "a\0b",
        "..\\up",
        "a\nb",
        "\x1b]0;title\x07",
        "a\x7fb",
        "a\x9bb",
    ],
)
def test_under_root_refuses_names_that_leave_the_root_or_hold_control_characters(tmp_path: Path, name: str) -> None:
    assert name_problem(name) is not None
    with pytest.raises(PathRefused):
        under_root(tmp_path, name)


def test_under_root_refuses_a_symlink_escape_and_keeps_plain_names(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(outside, root / "link")
    with pytest.raises(PathRefused, match="symbolic link"):
        under_root(root, "link/file")
    assert under_root(root, "sub/dir/file.md") == root.resolve() / "sub" / "dir" / "file.md"


@pytest.mark.parametrize("name", ["../../escape", "{tmp}/abs-escape", "a/../../escape"])
async def test_a_projection_name_cannot_write_outside_the_work_dir(tmp_path: Path, name: str) -> None:
    work = tmp_path / "work"
    engine = Engine()
    op = engine.attach("op")

    async def value(inv: WorkerInvocation) -> Any:
        return {"v": 1}

    name = name.format(tmp=tmp_path)
    spec = TaskSpec("w", projection=Projection(work, name, policy=CheckPolicy.STRICT))
    step = await engine.start_task(op, spec)
    with pytest.raises(DispatchFailed, match="refused"):
        await engine.run_step(op, step, InProcSpawner().register("w", value))
    assert list(tmp_path.rglob("*.md")) == []


def test_mse_refuses_an_escaping_projection_name_at_compile_time(tmp_path: Path) -> None:
    bp = json.loads(json.dumps(BP))
    bp["agents"][0]["meta"] = {"projection_name": "../../../escape"}
    (tmp_path / "bp.json").write_text(json.dumps(bp))
    proc = mse(["run", "bp.json", "--ephemeral", "--work-dir", "work", "--init", '{"x": 1}'], tmp_path)
    assert_diagnostic(proc, "invalid-projection-name")
    assert list(tmp_path.rglob("escape*")) == []
