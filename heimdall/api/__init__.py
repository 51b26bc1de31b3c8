"""The management API under /api, plus /health and /metrics."""
