-- Sample: a three-stage B.pipeline with a bounded retry and a halt gate.
--
-- `draft` writes a first version, `review` stages a verdict part (PASS or BLOCKED). While it says
-- BLOCKED (at most twice) `fix` rewrites the draft in place and `review` runs again on it. A
-- review still BLOCKED after that halts the pipeline ($.halted_at = "review"); otherwise
-- `publish` runs and $.done is set. Seed the topic with --init '{"d": {"topic": "..."}}'.
local B = require "bp_dsl"

return B.bp {
  id = "sample-pipeline",
  flow = B.pipeline {
    B.stage "draft" { agent = "drafter", input = "$.d.topic" },
    B.stage "review" {
      agent = "reviewer",
      input = B.from "draft",
      retry = { max = 2, fix = B.stage "fix" { agent = "fixer", input = B.from "draft", out = "$.draft" } },
      halt_on = { "BLOCKED" },
    },
    B.stage "publish" { agent = "publisher", input = B.from "draft" },
    done = "$.done",
  },
  agents = {
    { name = "drafter", kind = "lua", spec = { source = [[return "TODO: write about " .. _PROMPT]] } },
    {
      name = "reviewer",
      kind = "lua",
      spec = {
        source = [[
          local open = _PROMPT:find("TODO", 1, true) ~= nil
          mse.stage("verdict", open and "BLOCKED" or "PASS")
          return open and "the draft still has a TODO" or "ready"
        ]],
      },
    },
    { name = "fixer", kind = "lua", spec = { source = [[return (_PROMPT:gsub("^TODO: write about", "Notes on"))]] } },
    { name = "publisher", kind = "lua", spec = { source = [[return { value = { published = _PROMPT } }]] } },
  },
  default_init_ctx = { d = { topic = "durable runs" } },
}
