"""How admin pages show a stored time: an ISO value for ``<time datetime>`` and a short UTC text."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True, slots=True)
class Moment:
    """A time as a page shows it: ``iso`` for the ``datetime`` attribute, ``text`` for people."""

    iso: str
    text: str


def as_utc(value: datetime) -> datetime:
    """SQLite hands timezone-aware columns back naive; every stored time is UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def moment(value: datetime | None, *, seconds: bool = False) -> Moment | None:
    """``2025-08-21 14:03 UTC`` (with seconds when asked), or None for no time."""
    if value is None:
        return None
    at = as_utc(value)
    return Moment(iso=at.isoformat(), text=at.strftime("%Y-%m-%d %H:%M:%S UTC" if seconds else "%Y-%m-%d %H:%M UTC"))
