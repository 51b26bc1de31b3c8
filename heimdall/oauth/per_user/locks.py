"""The process's refresh locks, shared with the server-level token refresher (one ``RowLocks`` per store)."""

from __future__ import annotations

from heimdall.gateway import Gateway
from heimdall.oauth.upstream.locking import RowLocks

_own: dict[int, RowLocks] = {}


def locks_for(gateway: Gateway) -> RowLocks:
    """``gateway.upstream_tokens.locks`` when the gateway has them, else one kept per store."""
    if gateway.upstream_tokens is not None:
        return gateway.upstream_tokens.locks
    locks = _own.get(id(gateway.store))
    if locks is None or locks.store is not gateway.store:
        locks = _own[id(gateway.store)] = RowLocks(gateway.store)
    return locks
