"""Sample Blueprints and agent files shipped with mlua-swarm.

`agents/` holds agent.md files; it is the last folder of the `$file` / `$agent_md` cascade, so a
bare `{"$agent_md": "researcher.md"}` resolves here when nothing closer has that file. The samples
themselves (`*.json`, `*.bp.lua` next to this module) pass `mse bp lint` and run as shipped.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

SAMPLE_SUFFIXES = (".json", ".yaml", ".bp.lua")


def samples_dir() -> Path:
    """The folder holding the sample Blueprints."""
    return Path(str(resources.files(__package__)))


def bundled_agents_dir() -> Path:
    """The bundled agents folder: the last tier of the reference cascade."""
    return samples_dir() / "agents"


def sample_name(path: Path) -> str:
    """A sample's name: its file name without the Blueprint suffix (`03-pipeline`)."""
    for suffix in SAMPLE_SUFFIXES:
        if path.name.endswith(suffix):
            return path.name[: -len(suffix)]
    return path.stem


def list_samples() -> dict[str, Path]:
    """Every sample Blueprint by name, in name order."""
    found = [p for p in samples_dir().iterdir() if p.is_file() and p.name.endswith(SAMPLE_SUFFIXES)]
    return {sample_name(p): p for p in sorted(found, key=lambda p: p.name)}


__all__ = ["SAMPLE_SUFFIXES", "bundled_agents_dir", "list_samples", "sample_name", "samples_dir"]
