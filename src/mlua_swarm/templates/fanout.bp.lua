{% import "_agents.lua.jinja" as agents with context %}
{% set lanes = stages or ["lint", "test", "build"] %}
-- {{ name }}: fan out over lanes, then summarise.
--
-- Each lane runs its own agent concurrently: it reads $.d.<lane> and writes $.lane.<lane> inside
-- its lane. With join = "all_settled" the `checks` stage collects one {status, value | reason}
-- per lane, and `summarizer` reduces that list.
local B = require "bp_dsl"

return B.bp {
  id = "{{ name }}",
  flow = B.pipeline {
    B.stage "checks" { fanout = { lanes = { {% for lane in lanes %}"{{ lane }}"{{ ", " if not loop.last }}{% endfor %} }, join = "all_settled" } },
    B.stage "summary" { agent = "summarizer", input = B.from "checks" },
  },
  agents = {
{% for lane in lanes %}
{{ agents.agent(lane, 'return "' ~ lane ~ ': checked " .. _PROMPT') }}
{% endfor %}
{{ agents.agent("summarizer", '
          local ok = 0
          for _, lane in ipairs(_CTX) do
            if lane.status == "fulfilled" then ok = ok + 1 end
          end
          return { value = { lanes = #_CTX, fulfilled = ok } }
        ') }}
  },
{% include "_operators.lua.jinja" %}
  default_init_ctx = { d = { {% for lane in lanes %}["{{ lane }}"] = "src/{{ lane }}"{{ ", " if not loop.last }}{% endfor %} } },
}
