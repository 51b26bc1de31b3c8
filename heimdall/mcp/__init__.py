"""The MCP gateway: upstream MCP clients, the tool catalog, the /mcp server and MCP tools in LLM requests."""
