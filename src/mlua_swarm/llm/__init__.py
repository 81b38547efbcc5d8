"""The LLM runtime behind the `agent_block` kind: providers over the official `openai` and
`anthropic` SDKs (the `mlua-swarm[llm]` extra, imported only when a model is called), MCP servers
as tools, the agent loop, usage and prices. See docs/agents.md.
"""
