"""Entitlement and allocation (L1, L4, L5, L7): what an email, or one of its appliances,
may unlock at a given moment. Derived from the plans, never stored. No I/O.

- The email: the highest active edition (L1); else the highest still in grace (L6); else
  ``free``. Support comes with an active plan only (L7).
- An appliance: through the plan the allocation gives it, and only that one (L4, L5).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from services.licensing.domain.appliances import Appliance, by_seniority, find_appliance
from services.licensing.domain.plans import PlanEntitlement
from services.licensing.domain.policy import Policy
from shared.basics.catalogue import FREE
from shared.contracts.licensing import LicenseReason, LicenseStatus


@dataclass(frozen=True)
class Entitlement:
    """What the customer's email, or one appliance, may unlock now (L1, L4, L7)."""

    status: LicenseStatus
    reason: LicenseReason
    edition: str
    valid_until: datetime | None
    plan: PlanEntitlement | None = field(default=None, compare=False)
    support: bool = False  # L7: support access comes with an active plan


SUSPENDED = Entitlement("suspended", "license_suspended", FREE, None)
NOT_REGISTERED = Entitlement("not_registered", "appliance_not_registered", FREE, None)
MOVED = Entitlement("moved", "license_moved_to_another_appliance", FREE, None)


def through(plan: PlanEntitlement, now: datetime, policy: Policy) -> Entitlement:
    """What ``plan`` unlocks now, active or in grace (the caller knows it is one of them)."""
    if plan.active_at(now):
        return Entitlement(
            "active", "plan_active", plan.edition, plan.ends_at, plan=plan, support=True
        )
    return Entitlement("grace", "grace_period", plan.edition, plan.grace_until(policy), plan=plan)


def entitled(plans: Sequence[PlanEntitlement], now: datetime, policy: Policy) -> Entitlement:
    """What the email may unlock, suspension aside: the highest active edition (L1), the
    latest end among its plans; else the highest edition still in grace (L6); else free."""
    rank = policy.catalogue.rank
    active = [p for p in plans if p.active_at(now)]
    if active:
        return through(max(active, key=lambda p: (rank(p.edition), p.ends_at)), now, policy)
    grace = [p for p in plans if p.in_grace_at(now, policy)]
    if grace:
        return through(max(grace, key=lambda p: (rank(p.edition), p.period_end)), now, policy)
    return Entitlement("expired", why_nothing(plans, now), FREE, None)


def why_nothing(plans: Sequence[PlanEntitlement], now: datetime) -> LicenseReason:
    if not plans:
        return "no_plan"
    if any(p.period_start > now for p in plans):
        return "plan_not_started"
    return "plan_ended"


def allocation(
    plans: Sequence[PlanEntitlement],
    appliances: Sequence[Appliance],
    now: datetime,
    policy: Policy,
) -> dict[str, PlanEntitlement]:
    """Which plan each active appliance runs on now (L1, L5, L6), derived, never stored.

    As many plans as there are appliances are chosen, active ones before those in
    grace; the chosen plans, highest edition first, go to appliances in seniority
    order. So one plan never unlocks two appliances; a lone appliance runs on the
    highest active edition, and on the next one when that ends (renewal, upgrade);
    an appliance whose plan ended keeps it through the grace period while the other
    appliances keep theirs.
    """
    rank = policy.catalogue.rank
    seated = by_seniority(appliances)
    entitled_plans = [p for p in plans if p.active_at(now) or p.in_grace_at(now, policy)]
    chosen = sorted(
        entitled_plans,
        key=lambda p: (p.active_at(now), rank(p.edition), p.ends_at),
        reverse=True,
    )[: len(seated)]
    chosen.sort(key=lambda p: (rank(p.edition), p.active_at(now), p.ends_at), reverse=True)
    return {a.appliance_id: plan for a, plan in zip(seated, chosen, strict=False)}


def appliance_entitlement(
    appliance_id: str,
    *,
    plans: Sequence[PlanEntitlement],
    appliances: Sequence[Appliance],
    suspended: bool,
    now: datetime,
    policy: Policy,
) -> Entitlement:
    """What one appliance may unlock (L4): through its own allocated plan only."""
    appliance = find_appliance(appliances, appliance_id)
    if appliance is None:
        return NOT_REGISTERED
    if appliance.status == "moved":
        return MOVED
    if suspended:
        return SUSPENDED
    plan = allocation(plans, appliances, now, policy).get(appliance_id)
    if plan is not None:
        return through(plan, now, policy)
    if entitled(plans, now, policy).status != "expired":
        return Entitlement("expired", "all_plans_in_use", FREE, None)
    return Entitlement("expired", why_nothing(plans, now), FREE, None)
