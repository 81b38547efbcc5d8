-- Sample: agents whose profiles come from the bundled agent files.
--
-- `B.agent { md = "researcher.md" }` is `{"$agent_md": "researcher.md"}`. No file of that name sits
-- next to this script, so the reference falls through the cascade (this folder, the Blueprint's
-- blueprint_ref_includes, MSE_BLUEPRINT_INCLUDES, --include) to the bundled `agents/` folder,
-- which is always last. A researcher.md of your own next to the script would win.
--
-- The agent file gives the name, description and system prompt; the referencing entry adds the
-- kind and spec (here small Lua stand-ins, so the sample runs without an operator or a model).
local B = require "bp_dsl"

return B.bp {
  id = "sample-bundled-agents",
  flow = B.pipeline {
    B.stage "research" { agent = "researcher" },
    B.stage "review" { agent = "reviewer", input = B.from "research", halt_on = { "BLOCKED" } },
    done = "$.done",
  },
  agents = {
    B.agent {
      md = "researcher.md",
      kind = "lua",
      spec = { source = [[return "summary: " .. _PROMPT .. " keeps every step's outcome (source: docs)"]] },
    },
    B.agent {
      md = "reviewer.md",
      kind = "lua",
      spec = {
        source = [[
          local sourced = _PROMPT:find("(source:", 1, true) ~= nil
          mse.stage("verdict", sourced and "PASS" or "BLOCKED")
          return sourced and "every claim has a source" or "a claim has no source"
        ]],
      },
    },
  },
  default_init_ctx = { d = { research = "the durable store" } },
}
