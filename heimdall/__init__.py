"""Heimdall: an OpenAI-compatible LLM gateway and an MCP gateway with per-user OAuth 2.1."""

__version__ = "0.1.0"
__all__ = ["__version__"]
