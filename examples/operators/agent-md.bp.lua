-- Agents from agent.md files: `drafter` and `fact-checker` come from ./agents/*.md (front matter
-- for the name and description, the body as the system prompt); this file adds the seat, the
-- worker binding and the verdict contract. The check halts the pipeline when it reads BLOCKED.
-- Launch with init_ctx {"d": {"draft": "<a topic>"}}.

local B = require("bp_dsl")

local flow = B.pipeline({
  B.stage "draft" { agent = "drafter" },
  B.stage "check" { agent = "fact-checker", input = B.from "draft", halt_on = { "BLOCKED" } },
  halted_at = "$.halted_at",
  done = "$.checked",
})

local runner = { backend = "ws_operator", variant = "claude", tools = {} }

return {
  id = "operator-agent-md",
  flow = flow,
  agents = {
    { ["$agent_md"] = "agents/drafter.md", kind = "operator", spec = { operator_ref = "main-ai" }, runner = runner },
    {
      ["$agent_md"] = "agents/fact-checker.md",
      kind = "operator",
      spec = { operator_ref = "main-ai" },
      runner = runner,
      verdict = { channel = "part", values = { "PASS", "BLOCKED" } },
      lints = { ["verdict-value-unhandled"] = "allow" },
    },
  },
  operators = { { name = "main-ai" } },
  strategy = { strict_refs = true, strict_kind = true },
  metadata = { description = "Operator agents whose prompts live in agent.md files next to the Blueprint." },
}
