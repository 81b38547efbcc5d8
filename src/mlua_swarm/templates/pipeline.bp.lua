{% import "_agents.lua.jinja" as agents with context %}
{% set names = stages or ["draft", "review", "publish"] %}
-- {{ name }}: a chained pipeline.
--
-- With chain = true each stage reads the previous stage's output; the first one reads
-- $.d.{{ names[0] }}. Each stage writes $.<stage>, and $.done is set at the end. Insert a gate with
-- `gate = true` and `halt_on = { "VALUE" }` on a stage whose agent stages a `verdict` part.
local B = require "bp_dsl"

return B.bp {
  id = "{{ name }}",
  flow = B.pipeline {
{% for stage in names %}
    B.stage "{{ stage }}" { agent = "{{ stage }}" },
{% endfor %}
    chain = true,
    done = "$.done",
  },
  agents = {
{% for stage in names %}
{{ agents.agent(stage, 'return "' ~ stage ~ '(" .. _PROMPT .. ")"') }}
{% endfor %}
  },
{% include "_operators.lua.jinja" %}
  default_init_ctx = { d = { ["{{ names[0] }}"] = "an idea" } },
}
