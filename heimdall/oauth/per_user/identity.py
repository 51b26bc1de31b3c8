"""Whose upstream token a call uses: the caller's one effective identity.

Priority ``user`` > ``vk`` > ``session`` (reference.md §4.7) picks *which* identity a call acts
as; there is no fallback to a lower one. A user asserted by a virtual key that has no token of its
own therefore gets lazy auth, never the virtual key's token: falling back would let one user act
with the upstream account another identity connected.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from heimdall.gateway import Gateway
from heimdall.mcp.runtime import Caller
from heimdall.oauth.server.bearer import virtual_key_by_id

IdentityKind = Literal["user", "vk", "session"]
IDENTITY_KINDS: tuple[IdentityKind, ...] = ("user", "vk", "session")
MAX_IDENTITY_LENGTH = 255


@dataclass(frozen=True, slots=True)
class Identity:
    kind: IdentityKind
    value: str


def parse_kind(kind: str | None) -> IdentityKind | None:
    for known in IDENTITY_KINDS:
        if kind == known:
            return known
    return None


def identity_of(caller: Caller | None) -> Identity | None:
    """The caller's effective identity (user > virtual key > anonymous /mcp session), or None."""
    if caller is None:
        return None
    if caller.user_id:
        return Identity("user", caller.user_id)
    if caller.vk_id:
        return Identity("vk", caller.vk_id)
    if caller.session_key:
        return Identity("session", caller.session_key)
    return None


def describe(gateway: Gateway, identity: Identity) -> str:
    """How pages name an identity: ``virtual key "team-a"``, ``user "alice"``, ``this MCP session``."""
    if identity.kind == "vk":
        vk = virtual_key_by_id(gateway, identity.value)
        return f'virtual key "{vk.name}"' if vk is not None else "a virtual key that no longer exists"
    if identity.kind == "user":
        return f'user "{identity.value}"'
    return "this MCP session"


def still_valid(gateway: Gateway, identity: Identity) -> bool:
    """A virtual key identity must still exist and be active; users and sessions are checked where they sign in."""
    if identity.kind != "vk":
        return True
    vk = virtual_key_by_id(gateway, identity.value)
    return vk is not None and vk.is_active
