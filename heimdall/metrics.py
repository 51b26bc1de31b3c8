"""Prometheus metrics, kept in a registry per app so tests and several apps in one process don't collide."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    #: Label combinations whose children are cached (callers choose model names, so this is bounded).
    MAX_CACHED = 10_000

    def __init__(self) -> None:
        self._children: dict[tuple[str, str, str, int], tuple[Any, Any]] = {}
        self._token_children: dict[tuple[str, str, str], Any] = {}
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

    def observe_request(self, endpoint: str, provider: str, model: str, status: int, seconds: float) -> None:
        """Count one request; labelled children are cached, since ``labels()`` costs more than the update."""
        key = (endpoint, provider, model, status)
        children = self._children.get(key)
        if children is None:
            children = (
                self.requests.labels(endpoint, provider, model, str(status)),
                self.latency.labels(endpoint, provider, model),
            )
            if len(self._children) < self.MAX_CACHED:
                self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def count_tokens(self, provider: str, model: str, usage: dict[str, Any]) -> None:
        for kind in ("prompt", "completion"):
            value = usage.get(f"{kind}_tokens")
            if isinstance(value, int) and value > 0:
                key = (provider, model, kind)
                child = self._token_children.get(key)
                if child is None:
                    child = self.tokens.labels(provider, model, kind)
                    if len(self._token_children) < self.MAX_CACHED:
                        self._token_children[key] = child
                child.inc(value)
