"""Step-up authorization: an upstream's 403 ``insufficient_scope`` asks for a login with wider scopes.

MCP authorization (2025-11-25, "Step-Up Authorization Flow"): the resource server answers
``403`` with ``WWW-Authenticate: Bearer error="insufficient_scope", scope="<needed>"`` (RFC 6750
§3.1); the client re-authorizes asking for the union of the scopes it had and the ones named.

The wanted scopes are kept in the ``status_reason`` of the row that needs the new login (no extra
column), in one fixed, human-readable form; scope tokens never contain a space (RFC 6749 §3.3), so
the list after the colon parses back unambiguously::

    upstream requires wider scope: <scope> <scope> …                    (server-level configuration)
    upstream requires wider scope (step-up <n> of <limit>): <scope> …   (per-user token: n-th step-up)
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

#: How many step-ups one per-user grant may go through before a challenge is left to fail.
STEP_UP_LIMIT = 2
REASON_PREFIX = "upstream requires wider scope"
_REASON = re.compile(r"^upstream requires wider scope(?: \(step-up (\d+) of \d+\))?: (\S+(?: \S+)*)$")


@dataclass(frozen=True, slots=True)
class StepUp:
    """Scopes a new login must ask for, and how many step-ups led there (0: server-level, uncounted)."""

    scopes: tuple[str, ...]
    count: int = 0


def widened(current: Iterable[str], requested: Iterable[str] | None) -> tuple[str, ...] | None:
    """``current`` followed by the requested scopes it lacks; None when that adds nothing."""
    have = list(dict.fromkeys(current))
    extra = [scope for scope in dict.fromkeys(requested or ()) if scope not in have]
    return tuple(have + extra) if extra else None


def describe(step: StepUp) -> str:
    """The ``status_reason`` that records ``step``."""
    count = f" (step-up {step.count} of {STEP_UP_LIMIT})" if step.count else ""
    return f"{REASON_PREFIX}{count}: {' '.join(step.scopes)}"


def parse(reason: str | None) -> StepUp | None:
    """The step-up a ``status_reason`` records, or None when it records something else."""
    match = _REASON.match(reason or "")
    if match is None:
        return None
    return StepUp(scopes=tuple(match.group(2).split(" ")), count=int(match.group(1) or 0))
