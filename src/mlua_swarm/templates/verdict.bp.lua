{% import "_agents.lua.jinja" as agents with context %}
{% set given = stages or [] %}
{% set roles = given[:2] + ["checker", "fixer"][given | length:] %}
{% set checker, fixer = roles[0], roles[1] %}
-- {{ name }}: review until PASS.
--
-- `{{ checker }}` stages a `verdict` part (PASS or FAIL). While it says FAIL (at most 3 times)
-- `{{ fixer }}` rewrites the code and `{{ checker }}` runs again; PASS accepts, anything else records
-- where it halted. The verdict contract makes the compiler check that both values are handled.
local F = require "flow_dsl"
local B = require "bp_dsl"

local verdict = F.p '$.check.parts["verdict"]'

return B.bp {
  id = "{{ name }}",
  flow = F.seq {
    F.assign { at = F.p "$.code", value = F.p "$.d.code" },
    F.step { agent = "{{ checker }}", input = F.p "$.code", out = F.p "$.check" },
    F.loop_ {
      counter = F.p "$.tries",
      max = 3,
      cond = F.p("$.tries"):lt(3):And(verdict:eq("FAIL")),
      body = F.seq {
        F.step { agent = "{{ fixer }}", input = F.p "$.code", out = F.p "$.code" },
        F.step { agent = "{{ checker }}", input = F.p "$.code", out = F.p "$.check" },
      },
    },
    F.branch {
      cond = verdict:eq("PASS"),
      on_true = F.assign { at = F.p "$.accepted", value = true },
      on_false = F.assign { at = F.p "$.halted_at", value = "{{ checker }}" },
    },
  },
  agents = {
{{ agents.agent(checker, '
          local clean = not _PROMPT:find("TODO", 1, true)
          mse.stage("verdict", clean and "PASS" or "FAIL")
          return clean and "no TODO left" or "found a TODO"
        ', extra='verdict = { channel = "part", values = { "PASS", "FAIL" } },') }}
{{ agents.agent(fixer, 'return (_PROMPT:gsub("TODO", "DONE", 1))') }}
  },
{% include "_operators.lua.jinja" %}
  default_init_ctx = { d = { code = "step one TODO; step two TODO" } },
}
