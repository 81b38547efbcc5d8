-- {{name}}: one step. Build with `mse bp build {{name}}.bp.lua`, run with `mse run {{name}}.bp.lua`.
local F = require "flow_dsl"
local B = require "bp_dsl"

return B.bp {
  id = "{{name}}",
  flow = F.seq {
    F.step { agent = "worker", input = F.p "$.d.input", out = F.p "$.result" },
  },
  agents = {
    {
      name = "worker",
      kind = "lua",
      spec = { source = [[return { value = "handled: " .. _PROMPT }]] },
    },
  },
  default_init_ctx = { d = { input = "hello" } },
}
