-- {{name}}: a chained pipeline with a halt gate.
--
-- Each stage reads the previous stage's output (chain = true). The review stage stages a
-- `verdict` part; when it is REJECT the pipeline stops and records the stage in $.halted_at,
-- otherwise it publishes and sets $.done.
local B = require "bp_dsl"

return B.bp {
  id = "{{name}}",
  flow = B.pipeline {
    B.stage "draft" { agent = "drafter", input = "$.d.topic" },
    B.stage "review" { agent = "reviewer", halt_on = { "REJECT" } },
    B.stage "publish" { agent = "publisher", input = B.from "draft" },
    chain = true,
    done = "$.done",
  },
  agents = {
    {
      name = "drafter",
      kind = "lua",
      spec = { source = [[return "A short note about " .. _PROMPT .. "."]] },
    },
    {
      name = "reviewer",
      kind = "lua",
      spec = {
        source = [[
          local verdict = (#_PROMPT > 0) and "APPROVE" or "REJECT"
          mse.stage("verdict", verdict)
          return "review: " .. verdict
        ]],
      },
    },
    {
      name = "publisher",
      kind = "lua",
      spec = { source = [[return { value = { published = _PROMPT } }]] },
    },
  },
  default_init_ctx = { d = { topic = "Lua pipelines" } },
}
