"""The services one running gateway holds, created in the app's lifespan and passed explicitly."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from heimdall.crypto import SecretBox
from heimdall.governance.request_log import RequestLog
from heimdall.llm.http1 import HTTP1Client
from heimdall.llm.pipeline import InferencePipeline
from heimdall.metrics import Metrics
from heimdall.settings import Settings
from heimdall.state import Snapshot, SnapshotHolder
from heimdall.store.repos import Store

if TYPE_CHECKING:
    from heimdall.mcp.service import MCPService
    from heimdall.oauth.upstream.tokens import BackgroundRefresher, UpstreamTokens


@dataclass
class Gateway:
    settings: Settings
    store: Store
    box: SecretBox
    snapshots: SnapshotHolder
    metrics: Metrics
    http: HTTP1Client
    pipeline: InferencePipeline
    request_log: RequestLog
    mcp: MCPService | None = None
    upstream_tokens: UpstreamTokens | None = None
    token_refresher: BackgroundRefresher | None = None

    @property
    def snapshot(self) -> Snapshot:
        return self.snapshots.current

    def body_limit(self) -> int:
        configured = self.snapshot.client.max_request_body_size_mb
        return configured * 1024 * 1024 if configured else self.settings.max_request_body_bytes
