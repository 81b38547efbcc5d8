{% import "_agents.lua.jinja" as agents with context %}
{% set worker = agent or "solo" %}
-- {{ name }}: one step. Build it with `mse bp build`, run it with `mse run`.
local F = require "flow_dsl"
local B = require "bp_dsl"

return B.bp {
  id = "{{ name }}",
  flow = F.seq {
    F.step { agent = "{{ worker }}", input = F.p "$.d.input", out = F.p "$.{{ worker }}" },
  },
  agents = {
{{ agents.agent(worker, 'return { value = "handled: " .. _PROMPT }') }}
  },
{% include "_operators.lua.jinja" %}
  default_init_ctx = { d = { input = "hello" } },
}
