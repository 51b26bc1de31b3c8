"""Prometheus metrics, kept in a registry per app so tests and several apps in one process don't collide."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "heimdall_requests_total",
            "Inference requests by endpoint, provider, model and HTTP status.",
            ["endpoint", "provider", "model", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "heimdall_request_duration_seconds",
            "Time from request to the last byte of the response.",
            ["endpoint", "provider", "model"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.upstream_errors = Counter(
            "heimdall_upstream_errors_total",
            "Failed upstream attempts (including retried ones) by provider, model and kind.",
            ["provider", "model", "kind"],
            registry=self.registry,
        )
        self.retries = Counter(
            "heimdall_upstream_retries_total",
            "Upstream attempts retried after a 429, a 5xx or a transport error.",
            ["provider"],
            registry=self.registry,
        )
        self.tokens = Counter(
            "heimdall_tokens_total",
            "Tokens reported by providers, by kind (prompt, completion).",
            ["provider", "model", "kind"],
            registry=self.registry,
        )
