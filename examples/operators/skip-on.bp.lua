-- triage -> analyze -> summarize, all done by the holder of the main-ai seat. `triage` stages a
-- `verdict` part; when it reads NOT_APPLICABLE the `analyze` stage is skipped (no spawn is sent)
-- and `summarize` goes on with the triage notes alone.
-- Launch with init_ctx {"d": {"triage": "<the incoming report>"}}.

local B = require("bp_dsl")

local flow = B.pipeline({
  B.stage "triage" { agent = "triager" },
  B.stage "analyze" { agent = "analyst", input = B.from "triage", skip_on = { "NOT_APPLICABLE" } },
  B.stage "summarize" { agent = "summarizer", input = B.from "triage" },
  halted_at = "$.halted_at",
  done = "$.finished",
})

local function seat(name, prompt)
  return {
    name = name,
    kind = "operator",
    spec = { operator_ref = "main-ai" },
    profile = { system_prompt = prompt, tools = {} },
    runner = { backend = "ws_operator", variant = "claude", tools = {} },
  }
end

local triager = seat("triager", "Stage a `verdict` part: NOT_APPLICABLE when the report is not ours, APPLICABLE otherwise; submit your notes.")
triager.verdict = { channel = "part", values = { "NOT_APPLICABLE", "APPLICABLE" } }
triager.lints = { ["verdict-value-unhandled"] = "allow" }

return {
  id = "operator-skip-on",
  flow = flow,
  agents = {
    triager,
    seat("analyst", "Work out the cause of the reported problem."),
    seat("summarizer", "Summarise the report and what was found, in three sentences."),
  },
  operators = { { name = "main-ai" } },
  strategy = { strict_refs = true, strict_kind = true },
  metadata = { description = "skip_on: a triage verdict part that skips the analysis stage." },
}
