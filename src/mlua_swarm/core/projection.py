"""Submit-time projection: a step's Final and its staged parts written as files under a work dir.

A Final becomes `<dir>/<step name>.md` (YAML front matter, then the value as fenced JSON); a part
becomes `<dir>/<part name>` with its raw value. Later submissions overwrite earlier ones. Failures
follow the check policy: `silent` ignores them, `warn` logs them, `strict` raises.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CheckPolicyStrict
from ..paths import PathRefused, name_problem, under_root
from .config import CheckPolicy

log = logging.getLogger(__name__)

DEFAULT_DIR_TEMPLATE = "workspace/tasks/{task_id}/ctx"


@dataclass(frozen=True, slots=True)
class Projection:
    """Where one step's outputs go: `root / template` (with `{task_id}`), the step's name, the policy."""

    root: Path
    name: str
    template: str = DEFAULT_DIR_TEMPLATE
    policy: CheckPolicy = CheckPolicy.WARN


def plain_file_name(name: str) -> bool:
    """A part name usable as a file name: one that `under_root` takes, without separators, not `.`."""
    return name_problem(name) is None and name != "." and "/" not in name and "\\" not in name


def project_final(projection: Projection, step_id: str, attempt: int, ok: bool, value: Any) -> None:
    body = json.dumps(value, indent=2, ensure_ascii=False)
    text = (
        f"---\nstep: {json.dumps(projection.name)}\ntask_id: {step_id}\nattempt: {attempt}\n"
        f"ok: {'true' if ok else 'false'}\n---\n```json\n{body}\n```\n"
    )
    _write(projection, step_id, f"{projection.name}.md", text)


def project_part(projection: Projection, step_id: str, name: str, value: Any) -> None:
    if not plain_file_name(name):
        _fail(projection, "part name", f"{name!r} is not a plain file name; nothing written")
        return
    text = value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False)
    _write(projection, step_id, name, text)


def _write(projection: Projection, step_id: str, file_name: str, text: str) -> None:
    """Write under the step's folder; a name that would land outside the work dir is refused."""
    try:
        target = under_root(under_root(projection.root, projection.template.format(task_id=step_id)), file_name)
    except PathRefused as exc:
        _fail(projection, "projection name", f"{exc}; nothing written")
        return
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    except OSError as exc:
        _fail(projection, "projection write", f"{target}: {exc.strerror or exc}")


def _fail(projection: Projection, context: str, message: str) -> None:
    if projection.policy is CheckPolicy.STRICT:
        raise CheckPolicyStrict(context, message)
    if projection.policy is CheckPolicy.WARN:
        log.warning("%s: %s", context, message)


__all__ = ["DEFAULT_DIR_TEMPLATE", "Projection", "plain_file_name", "project_final", "project_part"]
