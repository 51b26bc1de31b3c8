"""Allow-list semantics shared by provider keys, virtual keys and MCP tool lists.

An empty list allows nothing, ``["*"]`` allows everything; the wildcard cannot be mixed with
other values and duplicates are rejected (reference.md §7.4).
"""

from __future__ import annotations

from collections.abc import Iterable

WILDCARD = "*"


def validate_allowlist(values: list[str]) -> list[str]:
    if WILDCARD in values and len(values) > 1:
        raise ValueError('"*" cannot be combined with other values')
    seen: set[str] = set()
    for value in values:
        if not isinstance(value, str) or not value.strip():
            raise ValueError("entries must be non-empty strings")
        if value in seen:
            raise ValueError(f"duplicate entry {value!r}")
        seen.add(value)
    return values


class AllowList:
    """A compiled allow-list; ``allows`` is a set lookup on the hot path."""

    __slots__ = ("all", "names")

    def __init__(self, values: Iterable[str]) -> None:
        names = frozenset(values)
        self.all = WILDCARD in names
        self.names = names

    def allows(self, name: str) -> bool:
        return self.all or name in self.names

    def __bool__(self) -> bool:
        return self.all or bool(self.names)

    def __repr__(self) -> str:
        return "AllowList(*)" if self.all else f"AllowList({sorted(self.names)!r})"
