"""The OpenAI-compatible LLM gateway: providers, routing, aliases and the inference endpoints."""
