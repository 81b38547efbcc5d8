-- Three stages run by the holder of the main-ai seat: draft -> critique -> release.
-- `critique` stages a named `verdict` part; while it reads BLOCKED the `revise` stage reworks the
-- draft and the critique runs again (at most twice). A critique that stays BLOCKED stops the
-- pipeline and records the stage in $.stopped_at. Launch with init_ctx {"d": {"draft": "..."}}.

local B = require("bp_dsl")

local flow = B.pipeline({
  B.stage "draft" { agent = "writer" },
  B.stage "critique" {
    agent = "critic",
    input = B.from "draft",
    retry = {
      max = 2,
      fix = B.stage "revise" { agent = "reviser", input = B.from "critique" },
    },
  },
  B.stage "release" { agent = "releaser", input = B.from "draft" },
  halt_on = { "BLOCKED" },
  halted_at = "$.stopped_at",
  done = "$.released",
})

local function seat(name, prompt, extra)
  local agent = {
    name = name,
    kind = "operator",
    spec = { operator_ref = "main-ai" },
    profile = { system_prompt = prompt, tools = {} },
    runner = { backend = "ws_operator", variant = "claude", tools = {} },
  }
  for k, v in pairs(extra or {}) do agent[k] = v end
  return agent
end

return {
  id = "operator-pipeline",
  flow = flow,
  agents = {
    seat("writer", "Write a first version of the text you are given."),
    seat("critic", "Stage a `verdict` part (PASS or BLOCKED) and then submit your remarks.", {
      verdict = { channel = "part", values = { "PASS", "BLOCKED" } },
      -- PASS is handled by falling through to `release`; no condition names it.
      lints = { ["verdict-value-unhandled"] = "allow" },
    }),
    seat("reviser", "Rework the text so the critic's remarks are addressed."),
    seat("releaser", "Publish the approved text and say where it went."),
  },
  operators = { { name = "main-ai" } },
  strategy = { strict_refs = true, strict_kind = true },
  metadata = {
    description = "A B.pipeline of operator stages with a verdict part and a bounded revise loop.",
  },
}
