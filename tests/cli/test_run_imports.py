"""`mse run` loads what the Blueprint it runs needs: the YAML parser only for YAML (a Blueprint file
or an agent.md's front matter), and the store's SQLite backend only when the run is recorded."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from ..conftest import mse_modules

BLUEPRINT = {
    "id": "imports",
    "flow": {
        "kind": "step",
        "ref": "echo",
        "in": {"op": "path", "at": "$.topic"},
        "out": {"op": "path", "at": "$.out"},
    },
    "agents": [{"name": "echo", "kind": "rust_fn", "spec": {"fn_id": "identity"}}],
    "default_init_ctx": {"topic": "owls"},
}


def run(words: list[str], home: Path) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """`mse WORDS`, which must succeed; what it printed and the modules it loaded."""
    proc, loaded = mse_modules(words, home)
    assert proc.returncode == 0, proc.stderr
    return proc, loaded


def test_a_json_blueprint_runs_without_the_yaml_parser(tmp_path: Path) -> None:
    path = tmp_path / "bp.json"
    path.write_text(json.dumps(BLUEPRINT))
    proc, loaded = run(["run", str(path), "--ephemeral", "--json"], tmp_path)
    assert json.loads(proc.stdout)["status"] == "done"
    assert "yaml" not in loaded and "mlua_swarm.yamltext" not in loaded
    assert "mlua_swarm.blueprint.compiler" in loaded


def test_a_yaml_blueprint_and_an_agent_md_still_load_it(tmp_path: Path) -> None:
    (tmp_path / "echo.md").write_text("---\nname: echo\ndescription: says it back\n---\nRepeat the topic.\n")
    path = tmp_path / "bp.yaml"
    path.write_text(
        "id: imports\n"
        "flow: {kind: step, ref: echo, in: {op: path, at: $.topic}, out: {op: path, at: $.out}}\n"
        "agents:\n"
        "  - {$agent_md: echo.md, kind: rust_fn, spec: {fn_id: identity}}\n"
        "default_init_ctx: {topic: owls}\n"
    )
    proc, loaded = run(["run", str(path), "--ephemeral", "--json"], tmp_path)
    document = json.loads(proc.stdout)
    assert document["status"] == "done", document
    assert document["final_ctx"]["out"]["echoed"] == "owls"
    assert "yaml" in loaded and "mlua_swarm.yamltext" in loaded
