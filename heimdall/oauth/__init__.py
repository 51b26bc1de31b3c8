"""OAuth 2.1 in Heimdall; ``upstream``: the gateway as an OAuth client of upstream MCP servers."""
