"""The gateway's in-memory snapshot of the store, and how it stays fresh.

The hot path reads only this snapshot. A write through the management API reloads it in the
writing process at once; other processes (``--workers`` > 1, or other hosts on one database) see
the store's change counter move and reload within ``config_poll_seconds``, or at once when Redis
carries the change notice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from heimdall.governance.virtual_keys import VirtualKeyRuntime, build_virtual_keys
from heimdall.llm.catalog import ProviderRuntime, build_providers
from heimdall.oauth.oidc import sealing
from heimdall.oauth.settings import PerUserOAuthConfig
from heimdall.store import repos
from heimdall.store.repos import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClientSettings:
    enforce_auth_on_inference: bool = False
    max_request_body_size_mb: int | None = None


@dataclass(frozen=True)
class Snapshot:
    version: int = 0
    per_user_oauth: PerUserOAuthConfig = field(default_factory=PerUserOAuthConfig)
    providers: dict[str, ProviderRuntime] = field(default_factory=dict)
    virtual_keys_by_hash: dict[str, VirtualKeyRuntime] = field(default_factory=dict)
    client: ClientSettings = field(default_factory=ClientSettings)


CHANGE_CHANNEL = "heimdall:store-changed"


class SnapshotHolder:
    """Owns the current snapshot and reloads it when the store changes."""

    def __init__(self, store: Store, poll_seconds: float, redis_url: str | None = None) -> None:
        self.store = store
        self.poll_seconds = poll_seconds
        self.redis_url = redis_url
        self.current = Snapshot()
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._redis: Any = None
        #: Called after every reload that saw a new store version (e.g. to resync MCP connections).
        self.listeners: list[Callable[[Snapshot], Awaitable[None]]] = []

    async def changed(self) -> None:
        """Call after a committed write: reload here, and tell other processes through Redis if configured."""
        snapshot = await self.reload()
        if self._redis is not None:
            try:
                await self._redis.publish(CHANGE_CHANNEL, str(snapshot.version))
            except Exception:
                log.warning("could not publish a store change to Redis; other processes will poll", exc_info=True)

    async def reload(self) -> Snapshot:
        async with self._lock:
            async with self.store.read() as session:
                version = await repos.get_version(session)
                providers = await repos.list_providers(session)
                keys = await repos.list_keys(session)
                vks = await repos.list_virtual_keys(session)
                client = await repos.get_setting(session, repos.CLIENT_CONFIG_KEY, {}) or {}
                per_user = await repos.get_setting(session, repos.PER_USER_OAUTH_KEY, {}) or {}
            self.current = Snapshot(
                version=version,
                per_user_oauth=PerUserOAuthConfig.model_validate(sealing.unseal(self.store.box, per_user)),
                providers=build_providers(self.store.box, providers, keys),
                virtual_keys_by_hash=build_virtual_keys(vks),
                client=ClientSettings(
                    enforce_auth_on_inference=bool(client.get("enforce_auth_on_inference", False)),
                    max_request_body_size_mb=client.get("max_request_body_size_mb"),
                ),
            )
            snapshot = self.current
        for listener in self.listeners:
            try:
                await listener(snapshot)
            except Exception:
                log.exception("a store-change listener failed")
        return snapshot

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_seconds)
            try:
                async with self.store.read() as session:
                    version = await repos.get_version(session)
                if version != self.current.version:
                    await self.reload()
            except Exception:
                log.exception("could not check the store for changes")

    async def _listen(self) -> None:
        """Reload as soon as another process announces a change (the poll stays as the fallback)."""
        while True:
            try:
                pubsub = self._redis.pubsub()
                await pubsub.subscribe(CHANGE_CHANNEL)
                async for message in pubsub.listen():
                    if message.get("type") != "message":
                        continue
                    if int(message["data"]) != self.current.version:
                        await self.reload()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("lost the Redis change feed; retrying in %.0fs", self.poll_seconds, exc_info=True)
                await asyncio.sleep(self.poll_seconds)

    def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._poll(), name="snapshot-poll"))
        if self.redis_url:
            import redis.asyncio as redis_asyncio

            self._redis = redis_asyncio.Redis.from_url(self.redis_url)
            self._tasks.append(asyncio.create_task(self._listen(), name="snapshot-redis"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None
