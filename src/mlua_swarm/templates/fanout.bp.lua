-- {{name}}: fan out over a list, then summarise.
--
-- The `reviews` stage runs `reviewer` once per file (lanes run concurrently); with
-- join = "all_settled" every lane reports {status, value | reason}. `summarizer` gets that list.
local B = require "bp_dsl"

return B.bp {
  id = "{{name}}",
  flow = B.pipeline {
    B.stage "reviews" { input = "$.d.files", fanout = { agent = "reviewer", join = "all_settled" } },
    B.stage "summary" { agent = "summarizer", input = B.from "reviews" },
  },
  agents = {
    {
      name = "reviewer",
      kind = "lua",
      spec = { source = [[return "reviewed " .. _PROMPT]] },
    },
    {
      name = "summarizer",
      kind = "lua",
      spec = {
        source = [[
          local ok = 0
          for _, lane in ipairs(_CTX) do
            if lane.status == "fulfilled" then ok = ok + 1 end
          end
          return { value = { lanes = #_CTX, fulfilled = ok } }
        ]],
      },
    },
  },
  default_init_ctx = { d = { files = { "a.py", "b.py", "c.py" } } },
}
