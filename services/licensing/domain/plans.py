"""A plan an email holds, and its states over time (L1, L6, O7). No I/O.

A plan is ``upcoming``, ``active`` (start <= now < end), in ``grace`` (end <= now < end +
grace: the paid edition stays, no support), ``ended``, or ``superseded`` (an upgrade ended
it early: no grace, no expiry warning, the new plan takes over).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from pydantic import AwareDatetime, BaseModel

from services.licensing.domain.policy import Policy
from shared.contracts.licensing import PlanState
from shared.contracts.orders import PlanBound, PlanUpgraded


class PlanEntitlement(BaseModel):
    order_id: str
    reseller_id: str
    edition: str
    period_start: AwareDatetime
    period_end: AwareDatetime
    ended_at: AwareDatetime | None = None  # an upgrade ended it early (O7)
    superseded_by: str | None = None
    warnings_sent: list[int] = []  # L6: days-before-end warnings handled, once each
    expiry_announced: bool = False  # L6: license.expired handled

    @classmethod
    def of(cls, plan: PlanBound | PlanUpgraded) -> PlanEntitlement:
        """The plan a ``plan.bound`` or a ``plan.upgraded`` gives the email."""
        return cls(
            order_id=plan.order_id,
            reseller_id=plan.reseller_id,
            edition=plan.edition,
            period_start=plan.period_start,
            period_end=plan.period_end,
        )

    @property
    def superseded(self) -> bool:
        return self.ended_at is not None and self.ended_at < self.period_end

    @property
    def ends_at(self) -> datetime:
        return self.ended_at if self.superseded and self.ended_at else self.period_end

    def grace_until(self, policy: Policy) -> datetime | None:
        """A plan that ran its course keeps its edition through the grace period; an
        upgraded one does not (the new plan took over)."""
        return None if self.superseded else self.period_end + policy.grace

    def active_at(self, now: datetime) -> bool:
        return self.period_start <= now < self.ends_at

    def in_grace_at(self, now: datetime, policy: Policy) -> bool:
        until = self.grace_until(policy)
        return until is not None and self.period_end <= now < until

    def state_at(self, now: datetime, policy: Policy) -> PlanState:
        if now < self.period_start:
            return "upcoming"
        if self.active_at(now):
            return "active"
        if self.superseded:
            return "superseded"
        return "grace" if self.in_grace_at(now, policy) else "ended"


def find_plan(plans: Iterable[PlanEntitlement], order_id: str) -> PlanEntitlement | None:
    return next((p for p in plans if p.order_id == order_id), None)


# --- O7: an upgrade ends a plan early, whatever order its two events arrive in ------------


class PlanEnd(BaseModel):
    """An upgrade's end of a plan, kept until both the plan and its successor are known."""

    at: AwareDatetime
    by: str


def noted_end(
    pending: dict[str, PlanEnd], order_id: str, *, at: datetime, by: str
) -> dict[str, PlanEnd]:
    """``pending`` with the end of ``order_id`` reported ``at``, by the plan ``by``. The
    earlier of two reported moments wins, so the order in which ``plan.upgraded`` and
    ``plan.superseded`` arrive does not matter."""
    known = pending.get(order_id)
    end = PlanEnd(at=min(at, known.at) if known else at, by=known.by if known else by)
    return {**pending, order_id: end}


def apply_ends(plans: list[PlanEntitlement], pending: dict[str, PlanEnd]) -> dict[str, PlanEnd]:
    """End every plan whose end and successor are both known; returns the ends still
    waiting. A ``plan.superseded`` arriving before ``plan.upgraded`` so never leaves the
    customer without an edition in between."""
    waiting: dict[str, PlanEnd] = {}
    for order_id, end in pending.items():
        plan = find_plan(plans, order_id)
        if plan is None or find_plan(plans, end.by) is None:
            waiting[order_id] = end
            continue
        plan.ended_at = min(end.at, plan.ended_at) if plan.ended_at else end.at
        plan.superseded_by = plan.superseded_by or end.by
    return waiting
