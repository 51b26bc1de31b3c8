"""Heimdall benchmark harness: gateway overhead over near-free upstreams.

LLM part: nginx fixed-response upstream, wrk load on /v1/chat/completions. MCP part: an SDK MCP
server as upstream, raw streamable-HTTP ``tools/call`` load on /mcp. Run with ``make bench`` (or
``python -m bench --help``).
"""
