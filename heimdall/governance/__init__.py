"""Virtual keys: who may call which provider, model and MCP tool."""
