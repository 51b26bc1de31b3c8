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
from dataclasses import dataclass, field

from heimdall.governance.virtual_keys import VirtualKeyRuntime, build_virtual_keys
from heimdall.llm.catalog import ProviderRuntime, build_providers
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
    providers: dict[str, ProviderRuntime] = field(default_factory=dict)
    virtual_keys_by_hash: dict[str, VirtualKeyRuntime] = field(default_factory=dict)
    client: ClientSettings = field(default_factory=ClientSettings)


class SnapshotHolder:
    """Owns the current snapshot and reloads it when the store changes."""

    def __init__(self, store: Store, poll_seconds: float) -> None:
        self.store = store
        self.poll_seconds = poll_seconds
        self.current = Snapshot()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    async def reload(self) -> Snapshot:
        async with self._lock:
            async with self.store.read() as session:
                version = await repos.get_version(session)
                providers = await repos.list_providers(session)
                keys = await repos.list_keys(session)
                vks = await repos.list_virtual_keys(session)
                client = await repos.get_setting(session, repos.CLIENT_CONFIG_KEY, {}) or {}
            self.current = Snapshot(
                version=version,
                providers=build_providers(self.store.box, providers, keys),
                virtual_keys_by_hash=build_virtual_keys(vks),
                client=ClientSettings(
                    enforce_auth_on_inference=bool(client.get("enforce_auth_on_inference", False)),
                    max_request_body_size_mb=client.get("max_request_body_size_mb"),
                ),
            )
            return self.current

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

    def start(self) -> None:
        self._task = asyncio.create_task(self._poll(), name="snapshot-poll")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
