"""What licensing shows of a customer: the status view for operations (``license.status``)
and the claims of a signed licence (L3). Read-only. No I/O."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from services.licensing.domain.appliances import Appliance
from services.licensing.domain.customer import Customer
from services.licensing.domain.entitlement import Entitlement
from services.licensing.domain.policy import Policy
from shared.contracts.licensing import (
    ApplianceView,
    LicenceClaims,
    LicenseStatusResult,
    PlanEntitlementView,
)


class Licensee(Protocol):
    """Whom a licence is for: the ``Customer`` aggregate, or its ``LicenceView``."""

    @property
    def email(self) -> str: ...

    def appliance_entitlement(
        self, appliance_id: str, now: datetime, policy: Policy
    ) -> Entitlement: ...


def status_view(customer: Customer, now: datetime, policy: Policy) -> LicenseStatusResult:
    """``license.status``: edition, status, plans with their appliance, appliances, support;
    never a digest of a token or a secret."""
    entitled = customer.entitlement(now, policy)
    on_plan = {plan.order_id: a for a, plan in customer.allocation(now, policy).items()}
    return LicenseStatusResult(
        customer_email=customer.email,
        edition=entitled.edition,
        status=entitled.status,
        reason=entitled.reason,
        valid_until=entitled.valid_until,
        plans=[
            PlanEntitlementView(
                order_id=p.order_id,
                edition=p.edition,
                period_start=p.period_start,
                period_end=p.period_end,
                appliance_id=on_plan.get(p.order_id),
                state=p.state_at(now, policy),
                grace_until=p.grace_until(policy),
                ended_at=p.ended_at,
                superseded_by=p.superseded_by,
                warnings_sent=p.warnings_sent,
            )
            for p in customer.plans
        ],
        appliances=[
            _appliance_view(customer, a, on_plan, now, policy) for a in customer.appliances
        ],
        support=entitled.support,
        suspension_reason=customer.suspension_reason,
        suspended_by=customer.suspended_by,
        moves_left=customer.moves_left(now, policy),
    )


def _appliance_view(
    customer: Customer, a: Appliance, on_plan: dict[str, str], now: datetime, policy: Policy
) -> ApplianceView:
    e = customer.appliance_entitlement(a.appliance_id, now, policy)
    return ApplianceView(
        appliance_id=a.appliance_id,
        status=a.status,
        registered_at=a.registered_at,
        order_id=next((o for o, i in on_plan.items() if i == a.appliance_id), None),
        license_status=e.status,
        edition=e.edition,
        moved_at=a.moved_at,
    )


def licence_claims(
    customer: Licensee,
    appliance_id: str,
    entitlement: Entitlement,
    now: datetime,
    policy: Policy,
    *,
    key_id: str,
) -> LicenceClaims:
    """The signed licence's payload (L3), for the key ``key_id`` signs it with.

    ``valid_until`` never passes the plan's end plus grace, nor ``now`` plus the offline
    validity: an offline appliance re-checks at least that often, so a suspension or a
    move reaches it."""
    plan = entitlement.plan
    valid_until: datetime | None = None
    grace_until: datetime | None = None
    if plan is not None:
        grace_until = plan.grace_until(policy)
        valid_until = min(grace_until or plan.ends_at, now + policy.offline_validity)
    return LicenceClaims(
        customer_email=customer.email,
        appliance_id=appliance_id,
        edition=entitlement.edition,
        status=entitlement.status,
        reason=entitlement.reason,
        support=entitlement.support,
        order_id=plan.order_id if plan else None,
        period_end=plan.ends_at if plan else None,
        grace_until=grace_until,
        valid_until=valid_until,
        issued_at=now,
        key_id=key_id,
    )
