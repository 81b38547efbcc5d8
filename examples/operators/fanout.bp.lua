-- One `inspect` agent per element of $.d.targets (the fanout body is a single step, run once per
-- item with the element bound at $.item), then one `tally` step reads every lane's ctx from
-- $.lanes. Both are done by the holder of the main-ai seat.
-- Launch with init_ctx {"d": {"targets": ["core", "server", "cli"]}}.

local F = require("flow_dsl")

local flow = F.seq({
  F.fanout({
    items = F.p("$.d.targets"),
    bind = F.p("$.item"),
    join = "all",
    out = F.p("$.lanes"),
    body = F.step({ agent = "inspect", input = F.p("$.item"), out = F.p("$.report") }),
  }),
  F.step({ agent = "tally", input = F.p("$.lanes"), out = F.p("$.tally") }),
})

return {
  id = "operator-fanout",
  flow = flow,
  agents = {
    {
      name = "inspect",
      kind = "operator",
      spec = { operator_ref = "main-ai" },
      profile = { system_prompt = "Inspect the one target you are given and report what you found.", tools = {} },
      runner = { backend = "ws_operator", variant = "claude", tools = {} },
    },
    {
      name = "tally",
      kind = "operator",
      spec = { operator_ref = "main-ai" },
      profile = { system_prompt = "Read every lane's report and give one overall verdict with a short summary.", tools = {} },
      runner = { backend = "ws_operator", variant = "claude", tools = {} },
    },
  },
  operators = { { name = "main-ai" } },
  strategy = { strict_refs = true, strict_kind = true },
  metadata = {
    description = "F.fanout of one operator agent over a list of targets, then a tally over the collected lanes.",
  },
}
