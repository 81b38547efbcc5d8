{% set given = stages or [] %}
{% set roles = given[:2] + [agent or "reviewer", "reviser"][given | length:] %}
{% set reviewer, reviser = roles[0], roles[1] %}
-- {{ name }}: an LLM agent reviews a draft until it says PASS.
--
-- `{{ reviewer }}` is an `agent_block` agent in prompt mode: it sends its system prompt and the
-- draft to the model in profile.model and answers PASS or FAIL, which its verdict contract checks.
-- While it says FAIL (at most 3 times) `{{ reviser }}` rewrites the draft and `{{ reviewer }}` looks
-- again. Configure the model endpoint first (docs/agents.md): OPENAI_API_KEY for OpenAI,
-- MSE_LLM_BASE_URL for a local OpenAI-compatible server (Ollama, vLLM, llama.cpp, LM Studio), or
-- `model = "anthropic:..."` with ANTHROPIC_API_KEY. Usage and cost: `mse runs show RUN_ID`.
local F = require "flow_dsl"
local B = require "bp_dsl"

local verdict = F.p "$.review"

return B.bp {
  id = "{{ name }}",
  flow = F.seq {
    F.assign { at = F.p "$.draft", value = F.p "$.d.draft" },
    F.step { agent = "{{ reviewer }}", input = F.p "$.draft", out = F.p "$.review" },
    F.loop_ {
      counter = F.p "$.rounds",
      max = 3,
      cond = F.p("$.rounds"):lt(3):And(verdict:eq("FAIL")),
      body = F.seq {
        F.step { agent = "{{ reviser }}", input = F.p "$.draft", out = F.p "$.draft" },
        F.step { agent = "{{ reviewer }}", input = F.p "$.draft", out = F.p "$.review" },
      },
    },
    F.branch {
      cond = verdict:eq("PASS"),
      on_true = F.assign { at = F.p "$.accepted", value = true },
      on_false = F.assign { at = F.p "$.halted_at", value = "{{ reviewer }}" },
    },
  },
  agents = {
    {
      name = "{{ reviewer }}",
      kind = "agent_block",
      spec = { max_turns = 8 },
      -- To let the model use tools, start MCP servers and grant them through profile.tools:
      --   spec = { mcp_servers = { { name = "files", command = "my-mcp-server", args = {} } } },
      --   tools = { "mcp__files__read" },
      profile = {
        model = "openai:gpt-4o-mini",
        system_prompt = "You review release notes. If they name the version and every change has a reason, "
          .. "answer PASS; otherwise answer FAIL. Answer with that one word only.",
        tools = {},
      },
      verdict = { channel = "body", values = { "PASS", "FAIL" } },
    },
    {
      name = "{{ reviser }}",
      kind = "agent_block",
      profile = {
        model = "openai:gpt-4o-mini",
        system_prompt = "You improve release notes: make sure they name the version and give a reason "
          .. "for every change. Reply with the revised notes only.",
      },
    },
  },
  default_init_ctx = { d = { draft = "Release notes: fixed the login bug; faster search." } },
}
