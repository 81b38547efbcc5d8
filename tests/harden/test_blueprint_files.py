"""Blueprint files as careless editors and hostile folders make them: duplicate keys, byte order
marks, a huge YAML scalar, and an include folder that is a symbolic link out of the Blueprint's folder."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import mse_env

STEP = {"kind": "step", "ref": "a", "in": {"op": "lit", "value": None}, "out": {"op": "path", "at": "$.r"}}
AGENTS = [{"name": "a", "kind": "lua", "spec": {"source": "return 1"}}]


def lint(file: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlua_swarm", "bp", "lint", file.name, "--json"],
        capture_output=True,
        text=True,
        env=mse_env(),
        cwd=file.parent,
        timeout=timeout,
    )


def diagnostics(proc: subprocess.CompletedProcess[str]) -> list[dict[str, object]]:
    assert "Traceback" not in proc.stderr, proc.stderr
    found: list[dict[str, object]] = json.loads(proc.stdout)["diagnostics"]
    return found


def test_a_key_twice_in_a_json_object_is_a_diagnostic(tmp_path: Path) -> None:
    file = tmp_path / "bp.json"
    file.write_text(f'{{"id": "x", "flow": {json.dumps(STEP)}, "agents": {json.dumps(AGENTS)}, "id": "y"}}')
    proc = lint(file)
    assert proc.returncode == 2
    [found] = diagnostics(proc)
    assert found["kind"] == "duplicate-key"
    assert "'id' appears twice" in str(found["message"]) and found["help"]


def test_a_key_twice_in_a_yaml_mapping_is_a_diagnostic_at_its_line(tmp_path: Path) -> None:
    file = tmp_path / "bp.yaml"
    file.write_text(f"id: x\nflow: {json.dumps(STEP)}\nagents: {json.dumps(AGENTS)}\nflow: {{}}\n")
    proc = lint(file)
    assert proc.returncode == 2
    [found] = diagnostics(proc)
    assert found["kind"] == "duplicate-key" and "'flow' appears twice" in str(found["message"])
    assert found["span"] == {"file": "bp.yaml", "line": 4}


def test_a_yaml_merge_key_may_still_be_overridden(tmp_path: Path) -> None:
    file = tmp_path / "bp.yaml"
    file.write_text(
        "id: x\nflow:\n  <<: {kind: step, ref: b}\n  ref: a\n  in: {op: lit, value: null}\n"
        f"  out: {{op: path, at: $.r}}\nagents: {json.dumps(AGENTS)}\n"
    )
    assert lint(file).returncode == 0


@pytest.mark.parametrize("suffix", [".json", ".yaml", ".bp.lua"])
def test_a_byte_order_mark_is_not_part_of_the_text(tmp_path: Path, suffix: str) -> None:
    document = {"id": "x", "flow": STEP, "agents": AGENTS}
    if suffix == ".bp.lua":
        text = (
            'return { id = "x", flow = { kind = "step", ref = "a", ["in"] = { op = "lit", value = 0 },'
            ' out = { op = "path", at = "$.r" } }, agents = { { name = "a", kind = "lua",'
            ' spec = { source = "return 1" } } } }\n'
        )
    else:
        text = json.dumps(document)
    file = tmp_path / f"bp{suffix}"
    file.write_bytes(b"\xef\xbb\xbf" + text.encode())
    proc = lint(file)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_yaml_file_near_the_size_cap_parses_in_bounded_time(tmp_path: Path) -> None:
    """The pure-Python YAML scanner took over half a minute on a 15 MiB string; libyaml takes about a second."""
    file = tmp_path / "bp.yaml"
    file.write_text("id: " + "x" * (15 * 1024 * 1024) + f"\nflow: {json.dumps(STEP)}\nagents: {json.dumps(AGENTS)}\n")
    assert lint(file, timeout=20).returncode == 0


def test_an_include_folder_linked_out_of_the_blueprint_folder_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("return 'secret'")
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "linked").symlink_to(outside)
    agents = [{"name": "a", "kind": "lua", "spec": {"source": {"$file": "secret.txt"}}}]
    file = folder / "bp.json"
    file.write_text(json.dumps({"id": "x", "flow": STEP, "agents": agents, "blueprint_ref_includes": ["linked"]}))
    proc = lint(file)
    assert proc.returncode == 2
    codes = {str(d["kind"]): str(d["message"]) for d in diagnostics(proc)}
    assert "leads out of" in codes["ref-path-rejected"]
    assert "ref-not-found" in codes  # the file behind the link was not read
    (folder / "inside").mkdir()
    (folder / "inside" / "secret.txt").write_text("return 'fine'")
    file.write_text(json.dumps({"id": "x", "flow": STEP, "agents": agents, "blueprint_ref_includes": ["inside"]}))
    assert lint(file).returncode == 0
