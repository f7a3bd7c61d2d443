"""Licensing rules (L1-L8): the ``Customer`` aggregate, keyed by normalised email. No I/O."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel

from shared.catalogue import FREE, Catalogue
from shared.contracts.licensing import (
    ApplianceMoved,
    ApplianceRegistered,
    ApplianceView,
    CustomerNotification,
    LicenseStatus,
    LicenseStatusResult,
    LicenseUnlocked,
    PlanEntitlementView,
)
from shared.contracts.orders import PlanBound
from shared.errors import ErrorCode, Refused
from shared.store import Aggregate

TOKENS_KEPT = 5
# Compared against when the email is unknown, so that an unknown email costs the same
# work as a wrong token (L2: no enumeration).
DUMMY_HASH = hashlib.sha256(secrets.token_bytes(32)).hexdigest()  # nobody knows a preimage


def invalid_registration() -> Refused:
    """The one answer to a wrong email, a wrong token or an unknown email (L2)."""
    return Refused(
        ErrorCode.INVALID_REGISTRATION, "the email or the registration token is not valid"
    )


def digest(secret: str) -> str:
    """Tokens and appliance secrets are stored only as SHA-256 digests."""
    return hashlib.sha256(secret.encode()).hexdigest()


class PlanEntitlement(BaseModel):
    order_id: str
    reseller_id: str
    edition: str
    period_start: AwareDatetime
    period_end: AwareDatetime

    def active_at(self, now: datetime) -> bool:
        return self.period_start <= now < self.period_end


class Appliance(BaseModel):
    """A registered appliance. ``seniority`` orders appliances for plan allocation; an
    appliance that takes a licence over by a move inherits the seniority it replaces."""

    appliance_id: str
    secret_hash: str
    seniority: int
    status: Literal["active", "moved"] = "active"
    registered_at: AwareDatetime


class RegistrationToken(BaseModel):
    token_hash: str
    issued_at: AwareDatetime


@dataclass(frozen=True)
class Entitlement:
    """What the customer's email may unlock now (L1, L4, L7)."""

    status: LicenseStatus
    reason: str
    edition: str
    valid_until: datetime | None

    @property
    def support(self) -> bool:
        """L7: support access comes with an active plan."""
        return self.status == "active"


class Customer(Aggregate):
    """A final customer: its plans, registration tokens and appliances (``id`` = email)."""

    plans: list[PlanEntitlement] = []
    tokens: list[RegistrationToken] = []
    appliances: list[Appliance] = []
    suspended: bool = False
    suspension_reason: str | None = None

    @property
    def email(self) -> str:
        return self.id

    # --- L1 / L2: a plan is bound ----------------------------------------------------

    def add_plan(self, bound: PlanBound, *, token: str, now: datetime) -> None:
        """The email gains the edition until the plan ends (L1); a registration token goes
        to the customer through the mailer (L2). The token is kept only as a digest."""
        if any(p.order_id == bound.order_id for p in self.plans):
            return
        self.plans = [
            *self.plans,
            PlanEntitlement(
                order_id=bound.order_id,
                reseller_id=bound.reseller_id,
                edition=bound.edition,
                period_start=bound.period_start,
                period_end=bound.period_end,
            ),
        ]
        self.tokens = [*self.tokens, RegistrationToken(token_hash=digest(token), issued_at=now)][
            -TOKENS_KEPT:
        ]
        ids = {"customer_email": self.email, "occurred_at": now, "correlation_id": bound.order_id}
        self.record(
            LicenseUnlocked(
                **ids, order_id=bound.order_id, edition=bound.edition, valid_until=bound.period_end
            )
        )
        self.record(
            CustomerNotification(
                **ids,
                kind="plan_bound",
                edition=bound.edition,
                registration_token=token,
                order_id=bound.order_id,
            )
        )

    # --- L1 / L4: what may be unlocked ---------------------------------------------

    def entitlement(self, now: datetime, catalogue: Catalogue) -> Entitlement:
        if self.suspended:
            return Entitlement("suspended", "license_suspended", FREE, None)
        active = [p for p in self.plans if p.active_at(now)]
        if not active:
            reason = "plan_ended" if self.plans else "no_plan"
            return Entitlement("expired", reason, FREE, None)
        edition = catalogue.highest([p.edition for p in active])
        until = max(p.period_end for p in active if p.edition == edition)
        return Entitlement("active", "plan_active", edition, until)

    def allocation(self, now: datetime, catalogue: Catalogue) -> dict[str, PlanEntitlement]:
        """Which active plan each appliance runs on now (L1, L5), derived, never stored.

        Active plans, highest edition first, go to active appliances in seniority order:
        one appliance per plan; a lone appliance gets the highest edition; when its plan
        ends it runs on the next one (renewal, upgrade) without re-registering.
        """
        plans = sorted(
            (p for p in self.plans if p.active_at(now)),
            key=lambda p: (catalogue.rank(p.edition), p.period_end),
            reverse=True,
        )
        appliances = sorted(
            (a for a in self.appliances if a.status == "active"), key=lambda a: a.seniority
        )
        return {a.appliance_id: plan for a, plan in zip(appliances, plans, strict=False)}

    def appliance_entitlement(
        self, appliance_id: str, now: datetime, catalogue: Catalogue
    ) -> Entitlement:
        """What one appliance may unlock (L4): through its own allocated plan only."""
        appliance = self._appliance(appliance_id)
        if appliance is None:
            return Entitlement("not_registered", "appliance_not_registered", FREE, None)
        if appliance.status == "moved":
            return Entitlement("moved", "license_moved_to_another_appliance", FREE, None)
        if self.suspended:
            return Entitlement("suspended", "license_suspended", FREE, None)
        plan = self.allocation(now, catalogue).get(appliance_id)
        if plan is None:
            reason = "plan_ended" if self.plans else "no_plan"
            return Entitlement("expired", reason, FREE, None)
        return Entitlement("active", "plan_active", plan.edition, plan.period_end)

    # --- L2 / L5: registration -------------------------------------------------------

    def token_matches(self, token: str) -> bool:
        """Constant-time check against every kept token (no early return)."""
        given = digest(token)
        found = False
        for kept in self.tokens:
            found |= hmac.compare_digest(given, kept.token_hash)
        if not self.tokens:  # same work as one comparison, never a match
            hmac.compare_digest(given, DUMMY_HASH)
        return found

    def register(
        self, *, appliance_id: str, secret: str, move: bool, now: datetime, catalogue: Catalogue
    ) -> None:
        """Register an appliance: one appliance per active plan (L5).

        A known active appliance gets a new secret. A new one is accepted while there
        are fewer active appliances than active plans; otherwise ``move`` releases the
        most senior appliance (its next check reads ``moved``) and takes its place.
        """
        existing = self._appliance(appliance_id)
        if existing is not None and existing.status == "active":
            existing.secret_hash = digest(secret)
            return
        active_plans = [p for p in self.plans if p.active_at(now)]
        if not active_plans:
            raise Refused(ErrorCode.NO_ACTIVE_PLAN, "no active plan to register an appliance with")
        allocated = self.allocation(now, catalogue)
        ids = {"customer_email": self.email, "occurred_at": now}
        if len(allocated) < len(active_plans):
            seniority = max((a.seniority for a in self.appliances), default=0) + 1
        elif move:
            released = min(
                (a for a in self.appliances if a.appliance_id in allocated),
                key=lambda a: a.seniority,
            )
            released.status = "moved"
            seniority = released.seniority
            plan = allocated[released.appliance_id]
            self.record(
                ApplianceMoved(
                    **ids,
                    order_id=plan.order_id,
                    from_appliance_id=released.appliance_id,
                    to_appliance_id=appliance_id,
                    correlation_id=plan.order_id,
                )
            )
        else:
            raise Refused(
                ErrorCode.PLAN_IN_USE,
                "every active plan is used by another appliance; send move=true to move it here",
            )
        self.appliances = [a for a in self.appliances if a.appliance_id != appliance_id] + [
            Appliance(
                appliance_id=appliance_id,
                secret_hash=digest(secret),
                seniority=seniority,
                registered_at=now,
            )
        ]
        plan = self.allocation(now, catalogue)[appliance_id]
        self.record(
            ApplianceRegistered(
                **ids,
                appliance_id=appliance_id,
                order_id=plan.order_id,
                correlation_id=plan.order_id,
            )
        )

    def secret_matches(self, appliance_id: str, secret: str) -> bool:
        appliance = self._appliance(appliance_id)
        expected = appliance.secret_hash if appliance else DUMMY_HASH
        return hmac.compare_digest(digest(secret), expected) and appliance is not None

    def _appliance(self, appliance_id: str) -> Appliance | None:
        return next((a for a in self.appliances if a.appliance_id == appliance_id), None)

    # --- views -----------------------------------------------------------------------

    def status_view(self, now: datetime, catalogue: Catalogue) -> LicenseStatusResult:
        entitlement = self.entitlement(now, catalogue)
        on_plan = {plan.order_id: a for a, plan in self.allocation(now, catalogue).items()}
        return LicenseStatusResult(
            customer_email=self.email,
            edition=entitlement.edition,
            status=entitlement.status,
            reason=entitlement.reason,
            valid_until=entitlement.valid_until,
            plans=[
                PlanEntitlementView(**p.model_dump(), appliance_id=on_plan.get(p.order_id))
                for p in self.plans
            ],
            appliances=[
                ApplianceView(
                    appliance_id=a.appliance_id,
                    status=a.status,
                    registered_at=a.registered_at,
                    order_id=next((o for o, i in on_plan.items() if i == a.appliance_id), None),
                )
                for a in self.appliances
            ],
            support=entitlement.support,
        )
