"""Blueprint tools: schema, scaffold, build and register, doctor, explain, archive."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field

from ..blueprint.agent_md import AgentMdError, parse_agent_md
from ..blueprint.compiler import CompiledBlueprint, compile_blueprint
from ..blueprint.loader import expand_refs, load_blueprint_source
from ..blueprint.schema import blueprint_json_schema
from ..cli.bp_dsl import TemplateError, lint_built, render_template
from ..diagnostics import Diagnostic, DiagnosticError, Level
from ..dsl.runner import build_bp_lua
from ..paths import under_root, url_segment
from .state import McpState
from .toolkit import ToolBox, ToolFailure, ToolSpec

Bind = Annotated[
    str | None,
    Field(description="Where mse serve listens, `host:port` or a URL. Omit to use MSE_HTTP (default 127.0.0.1:7777)."),
]
BlueprintId = Annotated[str, Field(min_length=1, max_length=200, description="A registered Blueprint id.")]
LocalPath = Annotated[
    str | None,
    Field(description="A Blueprint file (.json, .yaml or .bp.lua) on this machine, instead of a registered id."),
]
Includes = Annotated[
    list[str] | None, Field(description="Extra folders searched for `$file` / `$agent_md` references.")
]

TemplateName = Literal["agent", "fanout", "pipeline", "single", "verdict"]
"""The templates `mse bp new` ships (a test keeps this in step with `template_names()`)."""

WARN_BYTES, WARN_LINES, BLOCK_BYTES, BLOCK_LINES = 25 * 1024, 200, 50 * 1024, 500
TEMPLATE_VAR = re.compile(r"{{\s*([A-Za-z_][\w.]*)")
SEVERITY_ORDER = ("OK", "WARN", "BLOCK", "ERROR")


def diagnostics_json(diagnostics: list[Diagnostic]) -> list[dict[str, Any]]:
    return [d.to_json() for d in diagnostics]


def first_hint(diagnostics: list[Diagnostic]) -> str | None:
    for d in diagnostics:
        if d.level is Level.ERROR and d.hint:
            return d.hint
    return next((d.hint for d in diagnostics if d.hint), None)


def local_path(value: str) -> Path:
    path = Path(value).expanduser()
    if not path.is_file():
        raise ToolFailure(
            "file-not-found",
            f"{value} is not a readable file (this process runs in {Path.cwd()})",
            "pass an absolute path, or a path relative to the folder mse mcp was started in",
        )
    return path


async def blueprint_source(
    state: McpState, bp_id: str | None, path: str | None, bind: str | None, includes: list[str] | None = None
) -> tuple[dict[str, Any], Path, str]:
    """The raw Blueprint (references expanded), the folder its references resolve against, and a label."""
    if (bp_id is None) == (path is None):
        raise ToolFailure(
            "invalid-arguments",
            "name exactly one Blueprint: a registered `id` or a local `path`",
            'pass {"id": "my-bp"} for a registered Blueprint, or {"path": "my-bp.bp.lua"} for a file',
        )
    if bp_id is not None:
        head = await state.api(bind).call("GET", f"/v1/blueprints/{url_segment(bp_id)}/head")
        raw = head.get("blueprint") if isinstance(head, dict) else None
        if not isinstance(raw, dict):
            raise ToolFailure("bad-server-answer", f"the server's head of {bp_id} holds no Blueprint object")
        return raw, Path.cwd(), f"registered:{bp_id}"
    assert path is not None
    file = local_path(path)
    try:
        raw, base_dir = load_blueprint_source(file)
        expanded = expand_refs(raw, base_dir, includes=includes or ())
    except DiagnosticError as exc:
        raise ToolFailure(
            "invalid-blueprint",
            f"{path} does not load:\n" + "\n".join(d.render() for d in exc.diagnostics),
            first_hint(exc.diagnostics) or "fix the file and call again (bp_schema shows the format)",
        ) from None
    if not isinstance(expanded, dict):
        raise ToolFailure("invalid-blueprint", f"{path} does not hold a Blueprint object", "see bp_schema")
    return expanded, base_dir, str(file)


def try_compile(raw: dict[str, Any], base_dir: Path, source: str) -> tuple[CompiledBlueprint | None, list[Diagnostic]]:
    try:
        compiled = compile_blueprint(raw, base_dir=base_dir, source=source)
    except DiagnosticError as exc:
        return None, exc.diagnostics
    return compiled, compiled.diagnostics


def prompt_facts(text: str) -> dict[str, Any]:
    """Size and template facts about a system prompt (rendered with Jinja at dispatch)."""
    import jinja2
    import jinja2.meta

    facts: dict[str, Any] = {"bytes": len(text.encode()), "lines": text.count("\n") + (1 if text else 0)}
    try:
        parsed = jinja2.Environment().parse(text)
        facts["template_variables"] = sorted(jinja2.meta.find_undeclared_variables(parsed))
        facts["template_syntax_error"] = None
    except jinja2.TemplateSyntaxError as exc:
        facts["template_variables"] = sorted(set(TEMPLATE_VAR.findall(text)))
        facts["template_syntax_error"] = f"line {exc.lineno}: {exc.message}"
    return facts


def severity(bytes_: int, lines: int, limits: dict[str, int], block: bool) -> str:
    if block and (bytes_ >= limits["block_bytes"] or lines >= limits["block_lines"]):
        return "BLOCK"
    if bytes_ >= limits["warn_bytes"] or lines >= limits["warn_lines"]:
        return "WARN"
    return "OK"


def agent_entries(raw: dict[str, Any]) -> list[dict[str, Any]]:
    return [a for a in raw.get("agents") or [] if isinstance(a, dict)]


def explain(raw: dict[str, Any], compiled: CompiledBlueprint | None, name: str, wrapper_dir: Path) -> dict[str, Any]:
    """How one agent definition turns into what its worker receives."""
    agent = next((a for a in agent_entries(raw) if a.get("name") == name), None)
    if agent is None:
        known = [str(a.get("name")) for a in agent_entries(raw)]
        raise ToolFailure(
            "unknown-agent", f"no agent named {name!r}", f"this Blueprint's agents are: {', '.join(known) or '(none)'}"
        )
    profile = agent.get("profile") or {}
    meta = agent.get("meta") or {}
    declared_tools = list(profile.get("tools") or [])
    compiled_agent = compiled.agents.get(name) if compiled else None
    runner = compiled_agent.runner.model_dump(exclude_none=True) if compiled_agent and compiled_agent.runner else None
    variant = (runner or {}).get("variant") or profile.get("worker_binding")
    ctx_keys: dict[str, Any] = {}
    for tier, layer in (
        ("blueprint_default_agent_ctx", raw.get("default_agent_ctx")),
        ("agent_meta_ctx", meta.get("ctx")),
    ):
        if isinstance(layer, dict):
            for key, value in layer.items():
                ctx_keys[key] = {"value": value, "winning_tier": tier}
    projection = None
    if compiled is not None:
        projection = compiled.step_names.canonical_of(name)
    report: dict[str, Any] = {
        "agent": name,
        "kind": agent.get("kind"),
        "compiled": compiled_agent is not None,
        "runner": runner,
        "worker_binding": variant,
        "declared_tools": {"tools": declared_tools, "count": len(declared_tools)},
        "system_prompt": prompt_facts(str(profile.get("system_prompt") or "")),
        "model": profile.get("model"),
        "effective_ctx": {"keys": ctx_keys},
        "output": {"projection_name": projection or meta.get("projection_name") or name},
        "timeout_secs": agent.get("timeout_secs"),
        "retry": agent.get("retry"),
        "verdict": agent.get("verdict"),
        "tool_drift": None,
    }
    if variant:
        report.update(tool_drift(declared_tools, wrapper_dir, str(variant)))
    return report


def tool_drift(declared: list[str], wrapper_dir: Path, variant: str) -> dict[str, Any]:
    """Declared tools against the tools a worker wrapper file (`<wrapper_dir>/<variant>.md`) grants.

    The variant comes from the Blueprint, so it is a name like any other: one leading out of
    `wrapper_dir` (`../x`, an absolute path) is refused rather than read.
    """
    wrapper = wrapper_dir / f"{variant}.md"
    try:
        front = parse_agent_md(under_root(wrapper_dir, f"{variant}.md").read_text(encoding="utf-8"), kind="operator")
    except (OSError, AgentMdError, ValueError) as exc:
        return {"wrapper_missing": True, "wrapper_error": f"{wrapper}: {exc}", "tool_drift": None}
    granted = set((front.get("profile") or {}).get("tools") or [])
    wanted = set(declared)
    return {
        "wrapper_missing": False,
        "wrapper_path": str(wrapper),
        "tool_drift": {
            "matched": sorted(wanted & granted),
            "declared_only": sorted(wanted - granted),
            "wrapper_only": sorted(granted - wanted),
        },
    }


def add_blueprint_tools(box: ToolBox, state: McpState) -> None:
    async def bp_schema() -> dict[str, Any]:
        return blueprint_json_schema()

    box.add(
        ToolSpec(
            "bp_schema",
            bp_schema,
            """The JSON Schema of a Blueprint document (agents, flow nodes, operators, metadata).

Read it before writing a Blueprint by hand or when bp_build / swarm_run refuse one as invalid.
The same schema is the resource mse://api/blueprint-schema. Takes no arguments.""",
            {},
            read_only=True,
        )
    )

    async def bp_new(
        template: Annotated[
            TemplateName,
            Field(
                description="Which scaffold: pipeline (chained stages), single (one agent), "
                "verdict (a review loop until PASS), fanout (parallel branches, then an aggregate), "
                "agent (an LLM agent reviews a draft until PASS; needs a model endpoint)."
            ),
        ],
        name: Annotated[
            str, Field(min_length=1, max_length=200, description="The Blueprint id (letters, digits, _ - .).")
        ],
        stages: Annotated[
            list[str] | None,
            Field(description="Stage names for pipeline, verdict and fanout (default: the template's)."),
        ] = None,
        agent: Annotated[str | None, Field(description="The agent name for the single template.")] = None,
        operator: Annotated[
            str | None,
            Field(description="Make the agents operator agents of this operator seat (you execute them via spawns)."),
        ] = None,
        binding: Annotated[
            str | None, Field(description="The worker binding of operator agents (implies operator agents).")
        ] = None,
        out: Annotated[
            str | None,
            Field(description="Write the script to this path (relative to mse mcp's folder) instead of returning it."),
        ] = None,
        force: Annotated[bool, Field(description="Overwrite `out` when it exists.")] = False,
    ) -> dict[str, Any]:
        try:
            script = render_template(template, name, stages=stages, agent=agent, operator=operator, binding=binding)
        except TemplateError as exc:
            raise ToolFailure("invalid-arguments", str(exc), exc.hint) from None
        if out is None:
            return {
                "status": "ok",
                "blueprint_id": name,
                "script": script,
                "next": "save it as a .bp.lua, then bp_build",
            }
        path = Path(out).expanduser()
        if path.is_dir():
            path = path / f"{name}.bp.lua"
        if path.exists() and not force:
            raise ToolFailure("file-exists", f"{path} exists", "pass force=true to overwrite it, or choose another out")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(script, encoding="utf-8")
        except OSError as exc:
            raise ToolFailure(
                "write-failed", f"cannot write {path}: {exc.strerror}", "choose a writable out path"
            ) from None
        return {
            "status": "ok",
            "blueprint_id": name,
            "path": str(path.resolve()),
            "next": f'edit the agents, then bp_build {{"script_path": "{path}"}}',
        }

    box.add(
        ToolSpec(
            "bp_new",
            bp_new,
            """Start a new Blueprint from a scaffold: writes NAME.bp.lua (Lua DSL) or returns its text.

Use it when the user wants a new flow and has no script yet. The scaffolds run as they are (their
agents are small Lua functions); replace the agents with real ones, then call bp_build. Pass
`operator` (a seat name such as "main-ai") to get operator agents instead: each of their steps
comes to you as a spawn through mse_pending_wait.""",
            {"template": "pipeline", "name": "review-notes", "out": "review-notes.bp.lua"},
        )
    )

    async def bp_build(
        script_path: Annotated[str, Field(min_length=1, description="The .bp.lua script to build.")],
        register: Annotated[
            bool, Field(description="Also register the result on mse serve (POST /v1/blueprints/{id}).")
        ] = True,
        bind: Bind = None,
        out: Annotated[str | None, Field(description="Also write the built Blueprint JSON to this path.")] = None,
        strict_embed: Annotated[
            bool, Field(description="Fail when a $file / $agent_md reference does not resolve here.")
        ] = False,
        include: Includes = None,
    ) -> dict[str, Any]:
        file = local_path(script_path)
        try:
            built = build_bp_lua(file)
        except DiagnosticError as exc:
            raise ToolFailure(
                "build-failed",
                f"{script_path} did not build (stage: build)",
                first_hint(exc.diagnostics) or "fix the Lua error at the reported line and build again",
                {"stage": "build", "diagnostics": diagnostics_json(exc.diagnostics)},
            ) from None
        findings = lint_built(built.value, file, includes=[Path(p) for p in include or []], strict_embed=strict_embed)
        if any(d.level is Level.ERROR for d in findings):
            raise ToolFailure(
                "lint-failed",
                f"{script_path} built but does not compile (stage: lint)",
                first_hint(findings) or "fix the reported elements and build again",
                {"stage": "lint", "diagnostics": diagnostics_json(findings)},
            )
        blueprint_id = str(built.value.get("id") or file.name.removesuffix(".bp.lua"))
        result: dict[str, Any] = {
            "status": "ok",
            "blueprint_id": blueprint_id,
            "authoring_warnings": diagnostics_json(built.warnings),
            "lint": diagnostics_json(findings),
        }
        if out is not None:
            try:
                Path(out).write_text(json.dumps(built.value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
            except OSError as exc:
                raise ToolFailure(
                    "write-failed", f"cannot write {out}: {exc.strerror}", "choose a writable path"
                ) from None
            result["out"] = out
        if not register:
            result["blueprint"] = built.value
            return result
        answer = await state.api(bind).call("POST", f"/v1/blueprints/{url_segment(blueprint_id)}", json=built.value)
        result["registered"] = answer
        result["next"] = f'swarm_run {{"blueprint": {{"kind": "id", "id": "{blueprint_id}"}}}}'
        return result

    box.add(
        ToolSpec(
            "bp_build",
            bp_build,
            """Build a .bp.lua script into Blueprint JSON, lint it, and (by default) register it on mse serve.

Use after editing a script. On success you get the Blueprint id and, when registered, its version;
run it with swarm_run {"blueprint": {"kind": "id", "id": ...}}. Pass register=false to only check
the script (the built JSON is returned). Failures name the stage (build, lint, register), every
diagnostic, and a fix hint.""",
            {"script_path": "review-notes.bp.lua", "register": True},
            open_world=True,
        )
    )

    async def bp_doctor(
        id: Annotated[str | None, Field(description="A Blueprint registered on mse serve.")] = None,
        path: LocalPath = None,
        bind: Bind = None,
        warn_bytes: Annotated[int, Field(gt=0, description="System prompt size (bytes) that is a WARN.")] = WARN_BYTES,
        warn_lines: Annotated[int, Field(gt=0, description="System prompt lines that are a WARN.")] = WARN_LINES,
        block_bytes: Annotated[int, Field(gt=0, description="System prompt size that is a BLOCK.")] = BLOCK_BYTES,
        block_lines: Annotated[int, Field(gt=0, description="System prompt lines that are a BLOCK.")] = BLOCK_LINES,
        disable_block: Annotated[bool, Field(description="Report oversized prompts as WARN, never BLOCK.")] = True,
        include: Includes = None,
    ) -> dict[str, Any]:
        raw, base_dir, label = await blueprint_source(state, id, path, bind, include)
        compiled, diagnostics = try_compile(raw, base_dir, label)
        limits = {
            "warn_bytes": warn_bytes,
            "warn_lines": warn_lines,
            "block_bytes": block_bytes,
            "block_lines": block_lines,
        }
        agents = []
        for agent in agent_entries(raw):
            facts = prompt_facts(str((agent.get("profile") or {}).get("system_prompt") or ""))
            agents.append(
                {
                    "name": agent.get("name"),
                    "kind": agent.get("kind"),
                    "system_prompt_bytes": facts["bytes"],
                    "system_prompt_lines": facts["lines"],
                    "severity": severity(facts["bytes"], facts["lines"], limits, not disable_block),
                }
            )
        levels = [a["severity"] for a in agents]
        if any(d.level is Level.ERROR for d in diagnostics):
            levels.append("ERROR")
        elif any(d.level is Level.WARN for d in diagnostics):
            levels.append("WARN")
        verdict = max(levels or ["OK"], key=SEVERITY_ORDER.index)
        return {
            "blueprint": label,
            "verdict": verdict,
            "compiles": compiled is not None,
            "agents": agents,
            "thresholds": {**limits, "block_enabled": not disable_block},
            "diagnostics": diagnostics_json(diagnostics),
        }

    box.add(
        ToolSpec(
            "bp_doctor",
            bp_doctor,
            """Health report of a Blueprint, registered (id) or on disk (path): does it compile, every
lint finding with its hint, and the size of each agent's system prompt (large prompts leave a
sub-agent little room for its task).

verdict is the worst of OK < WARN < BLOCK < ERROR. It only reports; nothing is blocked.""",
            {"id": "review-notes"},
            read_only=True,
            open_world=True,
        )
    )

    async def bp_explain_agent(
        agent: Annotated[str, Field(min_length=1, description="The agent's name inside the Blueprint.")],
        bp_id: Annotated[str | None, Field(description="A Blueprint registered on mse serve.")] = None,
        path: LocalPath = None,
        bind: Bind = None,
        wrapper_dir: Annotated[
            str, Field(description="Folder of worker wrapper files <variant>.md, compared for tool drift.")
        ] = ".claude/agents",
        include: Includes = None,
    ) -> dict[str, Any]:
        raw, base_dir, label = await blueprint_source(state, bp_id, path, bind, include)
        compiled, diagnostics = try_compile(raw, base_dir, label)
        report = explain(raw, compiled, agent, Path(wrapper_dir))
        report["blueprint"] = label
        report["diagnostics"] = [d for d in diagnostics_json(diagnostics) if _about(d, agent)]
        return report

    box.add(
        ToolSpec(
            "bp_explain_agent",
            bp_explain_agent,
            """Explain one agent: its kind and runner, declared tools, system prompt (size, template
variables, syntax errors), the ctx keys it sees and which layer sets them, the name its output is
stored under, and, when it names a worker variant, which declared tools its wrapper file
<wrapper_dir>/<variant>.md does not grant (tool_drift.declared_only). Read-only.""",
            {"bp_id": "review-notes", "agent": "reviewer"},
            read_only=True,
            open_world=True,
        )
    )

    async def bp_explain_agents(
        bp_id: Annotated[str | None, Field(description="A Blueprint registered on mse serve.")] = None,
        path: LocalPath = None,
        bind: Bind = None,
        wrapper_dir: Annotated[
            str, Field(description="Folder of worker wrapper files <variant>.md.")
        ] = ".claude/agents",
        include: Includes = None,
    ) -> dict[str, Any]:
        raw, base_dir, label = await blueprint_source(state, bp_id, path, bind, include)
        compiled, diagnostics = try_compile(raw, base_dir, label)
        rows = []
        for entry in agent_entries(raw):
            name = str(entry.get("name"))
            full = explain(raw, compiled, name, Path(wrapper_dir))
            drift = full.get("tool_drift") or {}
            rows.append(
                {
                    "agent": name,
                    "kind": full["kind"],
                    "variant": full["worker_binding"],
                    "declared_tools_count": full["declared_tools"]["count"],
                    "system_prompt_bytes": full["system_prompt"]["bytes"],
                    "template_syntax_error": full["system_prompt"]["template_syntax_error"],
                    "wrapper_missing": full.get("wrapper_missing"),
                    "declared_only": len(drift.get("declared_only", [])) if drift else None,
                    "wrapper_only": len(drift.get("wrapper_only", [])) if drift else None,
                }
            )
        return {
            "blueprint": label,
            "compiles": compiled is not None,
            "agents": rows,
            "diagnostics": diagnostics_json(diagnostics),
        }

    box.add(
        ToolSpec(
            "bp_explain_agents",
            bp_explain_agents,
            """One compact row per agent of a Blueprint (kind, variant, prompt size, tool-drift counts).
Use it to find the agent worth a closer look, then call bp_explain_agent for that one.""",
            {"bp_id": "review-notes"},
            read_only=True,
            open_world=True,
        )
    )

    async def bp_archive(
        id: BlueprintId,
        bind: Bind = None,
        confirm: Annotated[
            bool, Field(description="Must be true to archive; false only reports what would happen.")
        ] = False,
    ) -> dict[str, Any]:
        api = state.api(bind)
        head = await api.call("GET", f"/v1/blueprints/{url_segment(id)}/head")
        version = head.get("version") if isinstance(head, dict) else None
        if not confirm:
            return {
                "dry_run": True,
                "id": id,
                "version": version,
                "would": "archive this Blueprint: new runs by id are refused until bp_unarchive",
                "next": "call again with confirm=true to archive",
            }
        await api.call("DELETE", f"/v1/blueprints/{url_segment(id)}")
        return {"archived": True, "id": id, "version": version, "undo": f'bp_unarchive {{"id": "{id}"}}'}

    box.add(
        ToolSpec(
            "bp_archive",
            bp_archive,
            """Archive a registered Blueprint (a reversible soft delete: its history stays, new runs by id
are refused). Without confirm=true it only reports what it would do.""",
            {"id": "review-notes", "confirm": True},
            destructive=True,
            open_world=True,
        )
    )

    async def bp_unarchive(id: BlueprintId, bind: Bind = None) -> dict[str, Any]:
        await state.api(bind).call("POST", f"/v1/blueprints/{url_segment(id)}/unarchive")
        return {"unarchived": True, "id": id}

    box.add(
        ToolSpec(
            "bp_unarchive",
            bp_unarchive,
            "Bring an archived Blueprint back, so it can be run by id again.",
            {"id": "review-notes"},
            open_world=True,
        )
    )


def _about(diagnostic: dict[str, Any], agent: str) -> bool:
    element = (diagnostic.get("span") or {}).get("element") or {}
    return element.get("name") == agent or not element


__all__ = ["add_blueprint_tools", "blueprint_source", "local_path"]
