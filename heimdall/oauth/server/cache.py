"""A small in-process cache of verified access tokens, so ``/mcp`` does not query the store per request.

Entries live at most ``CACHE_SECONDS``. Revocations made in this process drop the entries at
once (``drop_token``, ``drop_grant``); a revocation made by another gateway process is seen
here within ``CACHE_SECONDS``. Token expiry is checked on every use, cached or not.

There is one cache per running gateway, found through the gateway's store (``cache_for``).
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from heimdall.gateway import Gateway
from heimdall.store.repos import Store

CACHE_SECONDS = 5.0
MAX_ENTRIES = 10_000


@dataclass(frozen=True, slots=True)
class AccessGrant:
    """A verified access token and the grant behind it."""

    token_hash: str
    grant_id: str
    client_id: str
    identity_kind: str
    identity: str
    scopes: frozenset[str]
    audience: str
    expires_at: datetime | None


class AccessTokenCache:
    def __init__(self, ttl: float = CACHE_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.clock = clock
        self._entries: dict[str, tuple[float, AccessGrant]] = {}

    def get(self, token_hash: str) -> AccessGrant | None:
        entry = self._entries.get(token_hash)
        if entry is None:
            return None
        stored_at, grant = entry
        if self.clock() - stored_at > self.ttl:
            del self._entries[token_hash]
            return None
        return grant

    def put(self, grant: AccessGrant) -> None:
        if len(self._entries) >= MAX_ENTRIES:
            now = self.clock()
            self._entries = {h: e for h, e in self._entries.items() if now - e[0] <= self.ttl}
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
        self._entries[grant.token_hash] = (self.clock(), grant)

    def drop_token(self, token_hash: str) -> None:
        self._entries.pop(token_hash, None)

    def drop_grant(self, grant_id: str) -> None:
        for token_hash in [h for h, (_, g) in self._entries.items() if g.grant_id == grant_id]:
            del self._entries[token_hash]

    def clear(self) -> None:
        self._entries.clear()


_CACHES: weakref.WeakKeyDictionary[Store, AccessTokenCache] = weakref.WeakKeyDictionary()


def cache_for(gateway: Gateway) -> AccessTokenCache:
    """The access-token cache of this gateway (created on first use)."""
    cache = _CACHES.get(gateway.store)
    if cache is None:
        cache = _CACHES[gateway.store] = AccessTokenCache()
    return cache
