"""The ``Customer`` aggregate (L1-L8): one document per normalised email. No I/O.

It keeps the customer's state (plans, tokens, appliances, moves, suspension, what was
announced) and records the events; what the rules decide comes from the pure modules
beside it (``entitlement``, ``timeline``, ``registration``, ``plans``).
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, Field

from services.licensing.domain import registration, timeline
from services.licensing.domain.appliances import (
    Appliance,
    Move,
    find_appliance,
    moves_left,
    recent_moves,
)
from services.licensing.domain.entitlement import (
    SUSPENDED,
    Entitlement,
    allocation,
    appliance_entitlement,
    entitled,
)
from services.licensing.domain.plans import (
    PlanEnd,
    PlanEntitlement,
    apply_ends,
    find_plan,
    noted_end,
)
from services.licensing.domain.policy import Policy
from services.licensing.domain.registration import (
    RegistrationToken,
    Seat,
    digest,
    seat_for,
    with_token,
)
from shared.basics.catalogue import FREE
from shared.basics.errors import ErrorCode, Refused
from shared.contracts.licensing import (
    ApplianceMoved,
    ApplianceRegistered,
    CustomerNotification,
    LicenseChanged,
    LicenseExpired,
    LicenseExpiring,
    LicenseReinstated,
    LicenseSuspended,
    LicenseUnlocked,
)
from shared.contracts.orders import PlanBound, PlanSuperseded, PlanUpgraded
from shared.runtime.store import Aggregate


def unknown_customer(email: str) -> Refused:
    """Operations only: an email is not secret to them."""
    return Refused(ErrorCode.UNKNOWN_CUSTOMER, f"no licence is known for {email}")


class Customer(Aggregate):
    """A final customer: its plans, registration tokens and appliances (``id`` = email)."""

    # Random and opaque: it prefixes the customer's appliance secrets, so that a licence
    # check finds the customer in one indexed read (``<key>.<random>``), without the email.
    key: str = Field(default_factory=lambda: secrets.token_hex(16))
    plans: list[PlanEntitlement] = []
    tokens: list[RegistrationToken] = []
    appliances: list[Appliance] = []
    suspended: bool = False
    suspension_reason: str | None = None
    suspended_at: AwareDatetime | None = None
    suspended_by: str | None = None
    moves: list[Move] = []  # those of the last 30 days (L5)
    pending_ends: dict[str, PlanEnd] = {}  # old order id -> its end, successor not known yet
    announced_edition: str = FREE  # the effective edition last published (license.changed)
    # The earliest moment a warning, an expiry or a change of edition is due: the expiry
    # job's indexed scan. None when nothing is ahead.
    next_check_at: AwareDatetime | None = None

    @property
    def email(self) -> str:
        return self.id

    def event_ids(self) -> dict[str, Any]:
        return {"customer_email": self.email}

    # --- L1 / L2: a plan is bound ----------------------------------------------------

    def add_plan(self, bound: PlanBound, *, token: str, now: datetime, policy: Policy) -> None:
        """The email gains the edition until the plan ends (L1); a registration token goes
        to the customer through the mailer (L2). The token is kept only as a digest."""
        if find_plan(self.plans, bound.order_id) is not None:
            return
        self._add(bound, now)
        self.tokens = with_token(self.tokens, token, now)
        self.record(
            CustomerNotification,
            at=now,
            correlation_id=bound.order_id,
            kind="plan_bound",
            edition=bound.edition,
            registration_token=token,
            order_id=bound.order_id,
        )
        self.check(now, policy, reason="plan_bound")

    def _add(self, plan: PlanBound | PlanUpgraded, now: datetime) -> None:
        self.plans = [*self.plans, PlanEntitlement.of(plan)]
        self.pending_ends = apply_ends(self.plans, self.pending_ends)
        self.record(
            LicenseUnlocked,
            at=now,
            correlation_id=plan.order_id,
            order_id=plan.order_id,
            edition=plan.edition,
            valid_until=plan.period_end,
        )

    # --- L1 / O7: upgrades ---------------------------------------------------------------

    def upgrade(self, upgraded: PlanUpgraded, *, now: datetime, policy: Policy) -> None:
        """``plan.upgraded``: the new plan runs, the previous one ends at the upgrade moment.
        Appliances keep running: the new edition reaches them at their next check."""
        if find_plan(self.plans, upgraded.order_id) is None:
            self._add(upgraded, now)
        self._end(upgraded.previous_order_id, at=upgraded.occurred_at, by=upgraded.order_id)
        self.check(now, policy, reason="plan_upgraded")

    def supersede(self, superseded: PlanSuperseded, *, now: datetime, policy: Policy) -> None:
        """``plan.superseded``: the old plan ends, if ``plan.upgraded`` did not end it yet."""
        self._end(superseded.order_id, at=superseded.occurred_at, by=superseded.superseded_by)
        self.check(now, policy, reason="plan_superseded")

    def _end(self, order_id: str, *, at: datetime, by: str) -> None:
        """End a plan early, once the plan that supersedes it is known too
        (``plans.apply_ends``: either event may arrive first)."""
        self.pending_ends = noted_end(self.pending_ends, order_id, at=at, by=by)
        self.pending_ends = apply_ends(self.plans, self.pending_ends)

    # --- L6: warnings, expiry, changes of edition over time -----------------------------

    def check(self, now: datetime, policy: Policy, *, reason: str | None = None) -> None:
        """Publish what is due at ``now`` (once each: what was sent is kept here) and
        compute ``next_check_at``. Run by the expiry job and after every plan change."""
        for plan in self.plans:
            if plan.superseded:
                continue
            days_left = timeline.take_warning(plan, self.plans, now, policy)
            if days_left is not None:
                self._warn(plan, days_left, now)
            if timeline.take_expiry(plan, self.plans, now, policy):
                self.record(
                    LicenseExpired,
                    at=now,
                    correlation_id=plan.order_id,
                    order_id=plan.order_id,
                    edition=plan.edition,
                    period_end=plan.period_end,
                    grace_until=plan.grace_until(policy),
                )
        self._announce_edition(now, policy, reason)
        self.next_check_at = timeline.next_check_at(self.plans, now, policy)

    def _warn(self, plan: PlanEntitlement, days_left: int, now: datetime) -> None:
        """L6: ``license.expiring``, and the same warning to the customer by the mailer."""
        facts = {"order_id": plan.order_id, "edition": plan.edition, "days_left": days_left}
        self.record(
            LicenseExpiring,
            at=now,
            correlation_id=plan.order_id,
            period_end=plan.period_end,
            **facts,
        )
        self.record(
            CustomerNotification,
            at=now,
            correlation_id=plan.order_id,
            kind="license_expiring",
            **facts,
        )

    def _announce_edition(self, now: datetime, policy: Policy, reason: str | None) -> None:
        """``license.changed`` whenever the effective edition differs from the last one
        published (suspension aside: it has its own events)."""
        current = entitled(self.plans, now, policy)
        if current.edition == self.announced_edition:
            return
        previous, self.announced_edition = self.announced_edition, current.edition
        if reason is None:  # no plan event: time moved the edition
            reason = timeline.change_reason(previous, current.edition, policy)
        order_id = current.plan.order_id if current.plan else None
        self.record(
            LicenseChanged,
            at=now,
            correlation_id=order_id,
            edition=current.edition,
            previous_edition=previous,
            reason=reason,
            order_id=order_id,
        )

    # --- L1 / L4 / L5: what may be unlocked ------------------------------------------

    def entitlement(self, now: datetime, policy: Policy) -> Entitlement:
        """What the email may unlock: nothing while suspended (L8), else ``entitled``."""
        if self.suspended:
            return SUSPENDED
        return entitled(self.plans, now, policy)

    def appliance_entitlement(
        self, appliance_id: str, now: datetime, policy: Policy
    ) -> Entitlement:
        """What one appliance may unlock (L4): through its own allocated plan only."""
        return appliance_entitlement(
            appliance_id,
            plans=self.plans,
            appliances=self.appliances,
            suspended=self.suspended,
            now=now,
            policy=policy,
        )

    def allocation(self, now: datetime, policy: Policy) -> dict[str, PlanEntitlement]:
        """Which plan each active appliance runs on now (L5)."""
        return allocation(self.plans, self.appliances, now, policy)

    # --- L2: registration tokens -----------------------------------------------------

    def token_matches(self, token: str) -> bool:
        return registration.token_matches(self.tokens, token)

    def reissue_token(self, *, token: str, now: datetime, policy: Policy) -> int:
        """Operations re-issue a registration token (L2): it goes to the customer through
        the mailer and replaces every earlier one (a lost token may be a leaked one).
        Returns how many tokens were revoked."""
        revoked = len(self.tokens)
        self.tokens = with_token([], token, now)
        self.record(
            CustomerNotification,
            at=now,
            kind="registration_token_reissued",
            edition=entitled(self.plans, now, policy).edition,
            registration_token=token,
        )
        return revoked

    # --- L5: appliances and moves ----------------------------------------------------

    def register(
        self, *, appliance_id: str, secret: str, move: bool, now: datetime, policy: Policy
    ) -> None:
        """Register an appliance: one appliance per active plan (L5).

        A known active appliance gets a new secret. A new one takes the seat
        ``registration.seat_for`` gives it: a free plan, or by a move the place of the
        appliance on the highest active plan (its next check reads ``moved``).
        """
        if self.suspended:
            raise Refused(
                ErrorCode.LICENSE_SUSPENDED,
                "this licence is suspended: no appliance can be registered until it is reinstated",
            )
        existing = find_appliance(self.appliances, appliance_id)
        if existing is not None and existing.status == "active":
            existing.secret_hash = digest(secret)
            return
        seat = seat_for(
            plans=self.plans,
            appliances=self.appliances,
            moves=self.moves,
            move=move,
            now=now,
            policy=policy,
        )
        self._release(seat, to=appliance_id, now=now)
        self.appliances = [a for a in self.appliances if a.appliance_id != appliance_id] + [
            Appliance(
                appliance_id=appliance_id,
                secret_hash=digest(secret),
                seniority=seat.seniority,
                registered_at=now,
            )
        ]
        plan = self.allocation(now, policy)[appliance_id]
        self.record(
            ApplianceRegistered,
            at=now,
            correlation_id=plan.order_id,
            appliance_id=appliance_id,
            order_id=plan.order_id,
        )

    def _release(self, seat: Seat, *, to: str, now: datetime) -> None:
        """A move: the appliance the seat frees reads ``moved`` from now on (L5)."""
        released, plan = seat.released, seat.plan
        if released is None or plan is None:
            return
        released.status, released.moved_at = "moved", now
        self.moves = [
            *recent_moves(self.moves, now),
            Move(at=now, from_appliance_id=released.appliance_id, to_appliance_id=to),
        ]
        self.record(
            ApplianceMoved,
            at=now,
            correlation_id=plan.order_id,
            order_id=plan.order_id,
            from_appliance_id=released.appliance_id,
            to_appliance_id=to,
        )

    def moves_left(self, now: datetime, policy: Policy) -> int:
        return moves_left(self.moves, now, policy)

    def appliance_secret(self, random_part: str) -> str:
        return registration.appliance_secret(self.key, random_part)

    def secret_matches(self, appliance_id: str, secret: str) -> bool:
        appliance = find_appliance(self.appliances, appliance_id)
        return registration.secret_matches(appliance, secret)

    # --- L8: suspension --------------------------------------------------------------

    def suspend(self, *, reason: str, now: datetime, operator: str | None = None) -> None:
        """Operations suspend the licence: every appliance falls to ``free`` (L8). Again
        on a suspended licence changes nothing (the first reason stays)."""
        if self.suspended:
            return
        self.suspended, self.suspension_reason, self.suspended_at = True, reason, now
        self.suspended_by = operator
        self.record(LicenseSuspended, at=now, reason=reason, operator=operator)

    def reinstate(self, *, reason: str, now: datetime, operator: str | None = None) -> None:
        """Operations lift the suspension: the plans' editions are back at the next check."""
        if not self.suspended:
            return
        self.suspended, self.suspension_reason, self.suspended_at = False, None, None
        self.suspended_by = None
        self.record(LicenseReinstated, at=now, reason=reason, operator=operator)
