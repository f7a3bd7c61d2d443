"""What the customer document keeps of each appliance and each licence move (L5). No I/O."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Literal

from pydantic import AwareDatetime, BaseModel

from services.licensing.domain.policy import Policy

MOVE_WINDOW = timedelta(days=30)  # L5: moves are counted over 30 days


class Appliance(BaseModel):
    """A registered appliance. ``seniority`` orders appliances for plan allocation; an
    appliance that takes a licence over by a move inherits the seniority it replaces."""

    appliance_id: str
    secret_hash: str
    seniority: int
    status: Literal["active", "moved"] = "active"
    registered_at: AwareDatetime
    moved_at: AwareDatetime | None = None


class Move(BaseModel):
    at: AwareDatetime
    from_appliance_id: str
    to_appliance_id: str


def find_appliance(appliances: Iterable[Appliance], appliance_id: str) -> Appliance | None:
    return next((a for a in appliances if a.appliance_id == appliance_id), None)


def by_seniority(appliances: Iterable[Appliance]) -> list[Appliance]:
    """The active appliances, most senior first: the order plans are allocated in (L5)."""
    return sorted((a for a in appliances if a.status == "active"), key=lambda a: a.seniority)


def recent_moves(moves: Iterable[Move], now: datetime) -> list[Move]:
    """The moves still counted against the limit at ``now`` (the last 30 days)."""
    return [m for m in moves if m.at > now - MOVE_WINDOW]


def moves_left(moves: Iterable[Move], now: datetime, policy: Policy) -> int:
    return max(0, policy.moves_per_window - len(recent_moves(moves, now)))
