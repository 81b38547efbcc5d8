-- Sample: parallel lanes, then one aggregate step.
--
-- The `checks` stage fans out over three lanes; each lane runs its own agent on $.d.<lane> and
-- writes $.lane.<lane> inside its lane (several steps writing under `lane` claim that name only
-- weakly, so there is no naming clash). join = "all_settled" keeps going when a lane fails and
-- hands `summary` one {status, value | reason} per lane. The summarizer's profile comes from the
-- bundled summarizer.md.
local B = require "bp_dsl"

return B.bp {
  id = "sample-fanout",
  flow = B.pipeline {
    B.stage "checks" { fanout = { lanes = { "lint", "test", "docs" }, join = "all_settled" } },
    B.stage "summary" { agent = "summarizer", input = B.from "checks" },
  },
  agents = {
    { name = "lint", kind = "lua", spec = { source = [[return "lint: clean " .. _PROMPT]] } },
    { name = "test", kind = "lua", spec = { source = [[return "test: 12 passed in " .. _PROMPT]] } },
    {
      name = "docs",
      kind = "lua",
      spec = { source = [[error("docs: no README in " .. _PROMPT)]] },
    },
    B.agent {
      md = "summarizer.md",
      kind = "lua",
      spec = {
        source = [[
          local passed, failed = 0, 0
          for _, lane in ipairs(_CTX) do
            if lane.status == "fulfilled" then passed = passed + 1 else failed = failed + 1 end
          end
          return { value = { passed = passed, failed = failed, status = failed == 0 and "OK" or "MAJOR" } }
        ]],
      },
    },
  },
  default_init_ctx = { d = { lint = "src/", test = "tests/", docs = "docs/" } },
}
