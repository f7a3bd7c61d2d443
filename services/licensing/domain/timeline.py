"""The expiry timeline (L6): which warnings, expiries and changes of edition are due, and
when the next one is. Decided from the plans alone. No I/O.

``license.expiring`` goes out at each of the policy's days before a plan's end (30, 7, 1),
``license.expired`` at the end, and the edition stays through the grace period. Each is
handled once: what was handled is kept in the plan, so neither a restart nor a redelivery
repeats it. A plan continued by a renewal or a higher plan gets no warning and no expiry.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime

from services.licensing.domain.plans import PlanEntitlement
from services.licensing.domain.policy import DAY, Policy


def renewed(plan: PlanEntitlement, plans: Sequence[PlanEntitlement], policy: Policy) -> bool:
    """Another plan of the same or a higher edition runs on at this plan's end."""
    rank = policy.catalogue.rank(plan.edition)
    return any(
        other is not plan
        and policy.catalogue.rank(other.edition) >= rank
        and other.active_at(plan.period_end)
        for other in plans
    )


def take_warning(
    plan: PlanEntitlement, plans: Sequence[PlanEntitlement], now: datetime, policy: Policy
) -> int | None:
    """The days left that a ``license.expiring`` announces now, or None; the warnings due
    are marked handled either way (once per N days).

    Warnings missed (the job was down, the plan was bound late) collapse into the nearest
    one, with the real days left; none is sent for a plan a renewal or a higher plan
    continues, nor for one due before the plan started, nor after the end.
    """
    due = [
        d
        for d in policy.warning_days
        if d not in plan.warnings_sent and now >= plan.period_end - d * DAY
    ]
    if not due:
        return None
    plan.warnings_sent = sorted({*plan.warnings_sent, *due}, reverse=True)
    nearest = min(due)
    if (
        now >= plan.period_end
        or plan.period_end - nearest * DAY < plan.period_start
        or renewed(plan, plans, policy)
    ):
        return None
    return math.ceil((plan.period_end - now) / DAY)


def take_expiry(
    plan: PlanEntitlement, plans: Sequence[PlanEntitlement], now: datetime, policy: Policy
) -> bool:
    """Whether ``license.expired`` is due now for ``plan`` (at its end, unless renewed);
    the end is marked handled either way, so it is decided once."""
    if plan.expiry_announced or now < plan.period_end:
        return False
    plan.expiry_announced = True
    return not renewed(plan, plans, policy)


def change_reason(previous: str, current: str, policy: Policy) -> str:
    """Why the effective edition changed when no plan event says why: a plan started (a
    higher edition now) or one ended."""
    up = policy.catalogue.rank(current) > policy.catalogue.rank(previous)
    return "plan_started" if up else "plan_ended"


def next_check_at(
    plans: Sequence[PlanEntitlement], now: datetime, policy: Policy
) -> datetime | None:
    """The earliest moment after ``now`` when a warning, an expiry or a change of edition
    is due (the expiry job's indexed scan); None when nothing is ahead."""
    moments: list[datetime] = []
    for plan in plans:
        grace_until = plan.grace_until(policy)
        moments += [m for m in (plan.period_start, plan.ends_at, grace_until) if m]
        if not plan.superseded:
            moments += [  # a warning due before the plan starts is never sent
                plan.period_end - d * DAY
                for d in policy.warning_days
                if d not in plan.warnings_sent and plan.period_end - d * DAY >= plan.period_start
            ]
            if not plan.expiry_announced:
                moments.append(plan.period_end)
    return min((m for m in moments if m > now), default=None)
