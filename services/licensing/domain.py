"""Licensing rules (L1-L8): the ``Customer`` aggregate, keyed by normalised email. No I/O.

What an email may unlock is derived from its plans at a given moment, never stored:

- a plan is ``upcoming``, ``active`` (start <= now < end), in ``grace`` (end <= now <
  end + grace: the paid edition stays, no support), ``ended``, or ``superseded`` (an
  upgrade ended it early: no grace, no expiry warning, the new plan takes over);
- appliances get plans by the allocation rule (``Customer.allocation``);
- the moments when that answer changes or a warning is due are known in advance, and
  the earliest is kept in the top-level ``next_check_at`` that the expiry job scans.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Literal, TypedDict

from pydantic import AwareDatetime, BaseModel, Field

from shared.basics.catalogue import FREE, Catalogue
from shared.basics.errors import ErrorCode, RateLimited, Refused
from shared.contracts.licensing import (
    ApplianceMoved,
    ApplianceRegistered,
    ApplianceView,
    CustomerNotification,
    LicenseChanged,
    LicenseExpired,
    LicenseExpiring,
    LicenseReason,
    LicenseReinstated,
    LicenseStatus,
    LicenseStatusResult,
    LicenseSuspended,
    LicenseUnlocked,
    PlanEntitlementView,
    PlanState,
)
from shared.contracts.orders import PlanBound, PlanSuperseded, PlanUpgraded
from shared.runtime.store import Aggregate

TOKENS_KEPT = 5
MOVE_WINDOW = timedelta(days=30)  # L5: moves are counted over 30 days
DAY = timedelta(days=1)
MS = timedelta(milliseconds=1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Compared against when the email is unknown, so that an unknown email costs the same
# work as a wrong token (L2: no enumeration).
DUMMY_HASH = hashlib.sha256(secrets.token_bytes(32)).hexdigest()  # nobody knows a preimage


@dataclass(frozen=True)
class Policy:
    """The configurable terms of licensing (from settings), given to every decision."""

    catalogue: Catalogue
    grace: timedelta = timedelta(days=7)
    warning_days: tuple[int, ...] = (30, 7, 1)
    moves_per_window: int = 3
    offline_validity: timedelta = timedelta(days=30)


def invalid_registration() -> Refused:
    """The one answer to a wrong email, a wrong token or an unknown email (L2)."""
    return Refused(
        ErrorCode.INVALID_REGISTRATION, "the email or the registration token is not valid"
    )


def unknown_customer(email: str) -> Refused:
    """Operations only: an email is not secret to them."""
    return Refused(ErrorCode.UNKNOWN_CUSTOMER, f"no licence is known for {email}")


def digest(secret: str) -> str:
    """Tokens and appliance secrets are stored only as SHA-256 digests."""
    return hashlib.sha256(secret.encode()).hexdigest()


# --- L2: registration attempts, rate limited over a sliding window -----------------------


def source_key(host: str) -> str:
    """Who is counted as one source: an IPv4 address, or an IPv6 /64 (one site's prefix:
    an attacker rotating addresses inside it is still one source)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host[:128]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def window_index(now: datetime, window: timedelta) -> int:
    """Fixed windows of ``window`` counted from the epoch; the limit slides over two."""
    return (now - EPOCH) // window


def retry_after(
    *, previous: int, current: int, limit: int, window: timedelta, now: datetime
) -> int | None:
    """Sliding-window counter: ``None`` if the attempt just counted is allowed, else the
    seconds until the next attempt would be.

    ``previous`` attempts in the last fixed window weigh by how much of it still lies in
    the sliding window; ``current`` includes the attempt being decided. Counting first
    and deciding on the count returned makes the limit exact across replicas. Exact
    arithmetic (milliseconds, fractions): the answer at a boundary is never a rounding.
    """
    length = window // MS
    elapsed = ((now - EPOCH) % window) // MS
    into = Fraction(elapsed, length)
    if previous * (1 - into) + current <= limit:
        return None
    room = limit - current - 1
    if room >= 0 and previous > 0:  # later in this window, once enough of `previous` slid out
        wait = (1 - Fraction(room, previous) - into) * length
    else:  # in the next window, once enough of this one slid out
        wait = (length - elapsed) + max(Fraction(0), 1 - Fraction(limit - 1, current)) * length
    return max(1, math.ceil(wait / 1000))


# --- the aggregate -------------------------------------------------------------------------


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


class PlanEnd(BaseModel):
    """An upgrade's end of a plan, kept until both the plan and its successor are known."""

    at: AwareDatetime
    by: str


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


class RegistrationToken(BaseModel):
    token_hash: str
    issued_at: AwareDatetime


@dataclass(frozen=True)
class Entitlement:
    """What the customer's email, or one appliance, may unlock now (L1, L4, L7)."""

    status: LicenseStatus
    reason: LicenseReason
    edition: str
    valid_until: datetime | None
    plan: PlanEntitlement | None = field(default=None, compare=False)
    support: bool = False  # L7: support access comes with an active plan


class _Ids(TypedDict):
    customer_email: str
    occurred_at: datetime
    correlation_id: str | None


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
    moves: list[Move] = []  # those of the last 30 days (L5)
    pending_ends: dict[str, PlanEnd] = {}  # old order id -> its end, successor not known yet
    announced_edition: str = FREE  # the effective edition last published (license.changed)
    # The earliest moment a warning, an expiry or a change of edition is due: the expiry
    # job's indexed scan. None when nothing is ahead.
    next_check_at: AwareDatetime | None = None

    @property
    def email(self) -> str:
        return self.id

    def _ids(self, now: datetime, correlation_id: str | None = None) -> _Ids:
        return {"customer_email": self.email, "occurred_at": now, "correlation_id": correlation_id}

    # --- L1 / L2: a plan is bound ----------------------------------------------------

    def add_plan(self, bound: PlanBound, *, token: str, now: datetime, policy: Policy) -> None:
        """The email gains the edition until the plan ends (L1); a registration token goes
        to the customer through the mailer (L2). The token is kept only as a digest."""
        if self._plan(bound.order_id) is not None:
            return
        self._add(bound, now)
        self.tokens = [*self.tokens, RegistrationToken(token_hash=digest(token), issued_at=now)][
            -TOKENS_KEPT:
        ]
        self.record(
            CustomerNotification(
                **self._ids(now, bound.order_id),
                kind="plan_bound",
                edition=bound.edition,
                registration_token=token,
                order_id=bound.order_id,
            )
        )
        self.check(now, policy, reason="plan_bound")

    def _add(self, plan: PlanBound | PlanUpgraded, now: datetime) -> None:
        self.plans = [
            *self.plans,
            PlanEntitlement(
                order_id=plan.order_id,
                reseller_id=plan.reseller_id,
                edition=plan.edition,
                period_start=plan.period_start,
                period_end=plan.period_end,
            ),
        ]
        self._apply_pending_ends()
        self.record(
            LicenseUnlocked(
                **self._ids(now, plan.order_id),
                order_id=plan.order_id,
                edition=plan.edition,
                valid_until=plan.period_end,
            )
        )

    # --- L1 / O7: upgrades ---------------------------------------------------------------

    def upgrade(self, upgraded: PlanUpgraded, *, now: datetime, policy: Policy) -> None:
        """``plan.upgraded``: the new plan runs, the previous one ends at the upgrade moment.
        Appliances keep running: the new edition reaches them at their next check."""
        if self._plan(upgraded.order_id) is None:
            self._add(upgraded, now)
        self._end(upgraded.previous_order_id, at=upgraded.occurred_at, by=upgraded.order_id)
        self.check(now, policy, reason="plan_upgraded")

    def supersede(self, superseded: PlanSuperseded, *, now: datetime, policy: Policy) -> None:
        """``plan.superseded``: the old plan ends, if ``plan.upgraded`` did not end it yet."""
        self._end(superseded.order_id, at=superseded.occurred_at, by=superseded.superseded_by)
        self.check(now, policy, reason="plan_superseded")

    def _end(self, order_id: str, *, at: datetime, by: str) -> None:
        """End a plan early, once the plan that supersedes it is known too: a
        ``plan.superseded`` arriving before ``plan.upgraded`` never leaves the customer
        without an edition in between. The earlier of two reported moments wins, so the
        order in which the two events arrive does not matter."""
        known = self.pending_ends.get(order_id)
        self.pending_ends = {
            **self.pending_ends,
            order_id: PlanEnd(at=min(at, known.at) if known else at, by=known.by if known else by),
        }
        self._apply_pending_ends()

    def _apply_pending_ends(self) -> None:
        for order_id, end in list(self.pending_ends.items()):
            plan = self._plan(order_id)
            if plan is None or self._plan(end.by) is None:
                continue
            plan.ended_at = min(end.at, plan.ended_at) if plan.ended_at else end.at
            plan.superseded_by = plan.superseded_by or end.by
            self.pending_ends = {k: v for k, v in self.pending_ends.items() if k != order_id}

    # --- L6: warnings, expiry, changes of edition over time -----------------------------

    def check(self, now: datetime, policy: Policy, *, reason: str | None = None) -> None:
        """Publish what is due at ``now`` (once each: what was sent is kept here) and
        compute ``next_check_at``. Run by the expiry job and after every plan change."""
        for plan in self.plans:
            if plan.superseded:
                continue
            self._warn(plan, now, policy)
            if not plan.expiry_announced and now >= plan.period_end:
                plan.expiry_announced = True
                if not self._renewed(plan, policy):
                    self.record(
                        LicenseExpired(
                            **self._ids(now, plan.order_id),
                            order_id=plan.order_id,
                            edition=plan.edition,
                            period_end=plan.period_end,
                            grace_until=plan.grace_until(policy),
                        )
                    )
        self._announce_edition(now, policy, reason)
        self.next_check_at = self._next_moment(now, policy)

    def _warn(self, plan: PlanEntitlement, now: datetime, policy: Policy) -> None:
        """L6: ``license.expiring`` N days before the end, once per N. Warnings missed (the
        job was down, the plan was bound late) collapse into the nearest one; none is sent
        for a plan a renewal or a higher plan continues, or before the plan started."""
        due = [
            d
            for d in policy.warning_days
            if d not in plan.warnings_sent and now >= plan.period_end - d * DAY
        ]
        if not due:
            return
        plan.warnings_sent = sorted({*plan.warnings_sent, *due}, reverse=True)
        nearest = min(due)
        if (
            now >= plan.period_end
            or plan.period_end - nearest * DAY < plan.period_start
            or self._renewed(plan, policy)
        ):
            return
        days_left = math.ceil((plan.period_end - now) / DAY)
        ids = self._ids(now, plan.order_id)
        self.record(
            LicenseExpiring(
                **ids,
                order_id=plan.order_id,
                edition=plan.edition,
                period_end=plan.period_end,
                days_left=days_left,
            )
        )
        self.record(
            CustomerNotification(
                **ids,
                kind="license_expiring",
                edition=plan.edition,
                order_id=plan.order_id,
                days_left=days_left,
            )
        )

    def _renewed(self, plan: PlanEntitlement, policy: Policy) -> bool:
        """Another plan of the same or a higher edition runs on at this plan's end."""
        rank = policy.catalogue.rank(plan.edition)
        return any(
            other is not plan
            and policy.catalogue.rank(other.edition) >= rank
            and other.active_at(plan.period_end)
            for other in self.plans
        )

    def _announce_edition(self, now: datetime, policy: Policy, reason: str | None) -> None:
        """``license.changed`` whenever the effective edition differs from the last one
        published (suspension aside: it has its own events)."""
        current = self._entitled(now, policy)
        if current.edition == self.announced_edition:
            return
        previous, self.announced_edition = self.announced_edition, current.edition
        if reason is None:
            up = policy.catalogue.rank(current.edition) > policy.catalogue.rank(previous)
            reason = "plan_started" if up else "plan_ended"
        order_id = current.plan.order_id if current.plan else None
        self.record(
            LicenseChanged(
                **self._ids(now, order_id),
                edition=current.edition,
                previous_edition=previous,
                reason=reason,
                order_id=order_id,
            )
        )

    def _next_moment(self, now: datetime, policy: Policy) -> datetime | None:
        moments: list[datetime] = []
        for plan in self.plans:
            grace_until = plan.grace_until(policy)
            moments += [m for m in (plan.period_start, plan.ends_at, grace_until) if m]
            if not plan.superseded:
                moments += [  # a warning due before the plan starts is never sent
                    plan.period_end - d * DAY
                    for d in policy.warning_days
                    if d not in plan.warnings_sent
                    and plan.period_end - d * DAY >= plan.period_start
                ]
                if not plan.expiry_announced:
                    moments.append(plan.period_end)
        return min((m for m in moments if m > now), default=None)

    # --- L1 / L4: what may be unlocked ---------------------------------------------

    def entitlement(self, now: datetime, policy: Policy) -> Entitlement:
        """What the email may unlock: the highest active edition (L1); else the highest
        edition still in grace (L6); else free."""
        if self.suspended:
            return Entitlement("suspended", "license_suspended", FREE, None)
        return self._entitled(now, policy)

    def _entitled(self, now: datetime, policy: Policy) -> Entitlement:
        rank = policy.catalogue.rank
        active = [p for p in self.plans if p.active_at(now)]
        if active:
            best = max(active, key=lambda p: (rank(p.edition), p.ends_at))
            return Entitlement(
                "active", "plan_active", best.edition, best.ends_at, plan=best, support=True
            )
        grace = [p for p in self.plans if p.in_grace_at(now, policy)]
        if grace:
            best = max(grace, key=lambda p: (rank(p.edition), p.period_end))
            return Entitlement(
                "grace", "grace_period", best.edition, best.grace_until(policy), plan=best
            )
        return Entitlement("expired", self._why_nothing(now), FREE, None)

    def _why_nothing(self, now: datetime) -> LicenseReason:
        if not self.plans:
            return "no_plan"
        if any(p.period_start > now for p in self.plans):
            return "plan_not_started"
        return "plan_ended"

    def allocation(self, now: datetime, policy: Policy) -> dict[str, PlanEntitlement]:
        """Which plan each active appliance runs on now (L1, L5, L6), derived, never stored.

        As many plans as there are appliances are chosen, active ones before those in
        grace; the chosen plans, highest edition first, go to appliances in seniority
        order. So one plan never unlocks two appliances; a lone appliance runs on the
        highest active edition, and on the next one when that ends (renewal, upgrade);
        an appliance whose plan ended keeps it through the grace period while the other
        appliances keep theirs.
        """
        rank = policy.catalogue.rank
        appliances = sorted(
            (a for a in self.appliances if a.status == "active"), key=lambda a: a.seniority
        )
        entitled = [p for p in self.plans if p.active_at(now) or p.in_grace_at(now, policy)]
        chosen = sorted(
            entitled, key=lambda p: (p.active_at(now), rank(p.edition), p.ends_at), reverse=True
        )[: len(appliances)]
        chosen.sort(key=lambda p: (rank(p.edition), p.active_at(now), p.ends_at), reverse=True)
        return {a.appliance_id: plan for a, plan in zip(appliances, chosen, strict=False)}

    def appliance_entitlement(
        self, appliance_id: str, now: datetime, policy: Policy
    ) -> Entitlement:
        """What one appliance may unlock (L4): through its own allocated plan only."""
        appliance = self._appliance(appliance_id)
        if appliance is None:
            return Entitlement("not_registered", "appliance_not_registered", FREE, None)
        if appliance.status == "moved":
            return Entitlement("moved", "license_moved_to_another_appliance", FREE, None)
        if self.suspended:
            return Entitlement("suspended", "license_suspended", FREE, None)
        plan = self.allocation(now, policy).get(appliance_id)
        if plan is None:
            if self._entitled(now, policy).status != "expired":
                return Entitlement("expired", "all_plans_in_use", FREE, None)
            return Entitlement("expired", self._why_nothing(now), FREE, None)
        if plan.active_at(now):
            return Entitlement(
                "active", "plan_active", plan.edition, plan.ends_at, plan=plan, support=True
            )
        return Entitlement(
            "grace", "grace_period", plan.edition, plan.grace_until(policy), plan=plan
        )

    def licence_claims(
        self, appliance_id: str, entitlement: Entitlement, now: datetime, policy: Policy
    ) -> dict[str, object]:
        """The signed licence's payload (L3). ``valid_until`` never passes the plan's end
        plus grace, nor ``now`` plus the offline validity: an offline appliance re-checks
        at least that often, so a suspension or a move reaches it."""
        plan = entitlement.plan
        valid_until: datetime | None = None
        grace_until: datetime | None = None
        if plan is not None:
            grace_until = plan.grace_until(policy)
            valid_until = min(grace_until or plan.ends_at, now + policy.offline_validity)

        def iso(moment: datetime | None) -> str | None:
            return moment.isoformat() if moment else None

        return {
            "customer_email": self.email,
            "appliance_id": appliance_id,
            "edition": entitlement.edition,
            "status": entitlement.status,
            "reason": entitlement.reason,
            "support": entitlement.support,
            "order_id": plan.order_id if plan else None,
            "period_end": iso(plan.ends_at if plan else None),
            "grace_until": iso(grace_until),
            "valid_until": iso(valid_until),
            "issued_at": now.isoformat(),
        }

    # --- L2: registration tokens -----------------------------------------------------

    def token_matches(self, token: str) -> bool:
        """Constant-time check against every kept token (no early return)."""
        given = digest(token)
        found = False
        for kept in self.tokens:
            found |= hmac.compare_digest(given, kept.token_hash)
        if not self.tokens:  # same work as one comparison, never a match
            hmac.compare_digest(given, DUMMY_HASH)
        return found

    def reissue_token(self, *, token: str, now: datetime, policy: Policy) -> int:
        """Operations re-issue a registration token (L2): it goes to the customer through
        the mailer and replaces every earlier one (a lost token may be a leaked one).
        Returns how many tokens were revoked."""
        revoked = len(self.tokens)
        self.tokens = [RegistrationToken(token_hash=digest(token), issued_at=now)]
        self.record(
            CustomerNotification(
                **self._ids(now),
                kind="registration_token_reissued",
                edition=self._entitled(now, policy).edition,
                registration_token=token,
            )
        )
        return revoked

    # --- L5: appliances and moves ----------------------------------------------------

    def register(
        self, *, appliance_id: str, secret: str, move: bool, now: datetime, policy: Policy
    ) -> None:
        """Register an appliance: one appliance per active plan (L5).

        A known active appliance gets a new secret. A new one is accepted while there
        are fewer active appliances than active plans; otherwise ``move`` releases the
        appliance on the highest active plan (its next check reads ``moved``) and takes
        its place, within the number of moves allowed per 30 days.
        """
        if self.suspended:
            raise Refused(
                ErrorCode.LICENSE_SUSPENDED,
                "this licence is suspended: no appliance can be registered until it is reinstated",
            )
        existing = self._appliance(appliance_id)
        if existing is not None and existing.status == "active":
            existing.secret_hash = digest(secret)
            return
        active_plans = [p for p in self.plans if p.active_at(now)]
        if not active_plans:
            raise Refused(ErrorCode.NO_ACTIVE_PLAN, "no active plan to register an appliance with")
        active = sorted(
            (a for a in self.appliances if a.status == "active"), key=lambda a: a.seniority
        )
        if len(active) < len(active_plans):
            seniority = max((a.seniority for a in self.appliances), default=0) + 1
        elif move:
            seniority = self._move_to(appliance_id, active, now, policy)
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
        plan = self.allocation(now, policy)[appliance_id]
        self.record(
            ApplianceRegistered(
                **self._ids(now, plan.order_id),
                appliance_id=appliance_id,
                order_id=plan.order_id,
            )
        )

    def _move_to(
        self, appliance_id: str, active: list[Appliance], now: datetime, policy: Policy
    ) -> int:
        """Release the appliance on the highest active plan for ``appliance_id``; returns
        the seniority the newcomer inherits. Refused past the moves allowed (L5)."""
        recent = [m for m in self.moves if m.at > now - MOVE_WINDOW]
        if len(recent) >= policy.moves_per_window:
            wait = MOVE_WINDOW  # until the move that must leave the window has left it
            if policy.moves_per_window > 0:
                wait = recent[len(recent) - policy.moves_per_window].at + MOVE_WINDOW - now
            raise RateLimited(
                ErrorCode.MOVE_LIMIT_REACHED,
                f"{policy.moves_per_window} licence moves are allowed per 30 days; "
                f"the next one is possible after {(now + wait).isoformat()}",
                retry_after=math.ceil(wait.total_seconds()),
            )
        allocation = self.allocation(now, policy)
        released = next(
            a
            for a in active
            if (on := allocation.get(a.appliance_id)) is not None and on.active_at(now)
        )
        plan = allocation[released.appliance_id]
        released.status, released.moved_at = "moved", now
        self.moves = [
            *recent,
            Move(at=now, from_appliance_id=released.appliance_id, to_appliance_id=appliance_id),
        ]
        self.record(
            ApplianceMoved(
                **self._ids(now, plan.order_id),
                order_id=plan.order_id,
                from_appliance_id=released.appliance_id,
                to_appliance_id=appliance_id,
            )
        )
        return released.seniority

    def moves_left(self, now: datetime, policy: Policy) -> int:
        recent = [m for m in self.moves if m.at > now - MOVE_WINDOW]
        return max(0, policy.moves_per_window - len(recent))

    def appliance_secret(self, random_part: str) -> str:
        """An appliance secret: this customer's key, then the random part (the credential)."""
        return f"{self.key}.{random_part}"

    def secret_matches(self, appliance_id: str, secret: str) -> bool:
        appliance = self._appliance(appliance_id)
        expected = appliance.secret_hash if appliance else DUMMY_HASH
        return hmac.compare_digest(digest(secret), expected) and appliance is not None

    def _appliance(self, appliance_id: str) -> Appliance | None:
        return next((a for a in self.appliances if a.appliance_id == appliance_id), None)

    def _plan(self, order_id: str) -> PlanEntitlement | None:
        return next((p for p in self.plans if p.order_id == order_id), None)

    # --- L8: suspension --------------------------------------------------------------

    def suspend(self, *, reason: str, now: datetime) -> None:
        """Operations suspend the licence: every appliance falls to ``free`` (L8). Again
        on a suspended licence changes nothing (the first reason stays)."""
        if self.suspended:
            return
        self.suspended, self.suspension_reason, self.suspended_at = True, reason, now
        self.record(LicenseSuspended(**self._ids(now), reason=reason))

    def reinstate(self, *, reason: str, now: datetime) -> None:
        """Operations lift the suspension: the plans' editions are back at the next check."""
        if not self.suspended:
            return
        self.suspended, self.suspension_reason, self.suspended_at = False, None, None
        self.record(LicenseReinstated(**self._ids(now), reason=reason))

    # --- views -----------------------------------------------------------------------

    def status_view(self, now: datetime, policy: Policy) -> LicenseStatusResult:
        entitlement = self.entitlement(now, policy)
        on_plan = {plan.order_id: a for a, plan in self.allocation(now, policy).items()}
        return LicenseStatusResult(
            customer_email=self.email,
            edition=entitlement.edition,
            status=entitlement.status,
            reason=entitlement.reason,
            valid_until=entitlement.valid_until,
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
                for p in self.plans
            ],
            appliances=[self._appliance_view(a, on_plan, now, policy) for a in self.appliances],
            support=entitlement.support,
            suspension_reason=self.suspension_reason,
            moves_left=self.moves_left(now, policy),
        )

    def _appliance_view(
        self, a: Appliance, on_plan: dict[str, str], now: datetime, policy: Policy
    ) -> ApplianceView:
        e = self.appliance_entitlement(a.appliance_id, now, policy)
        return ApplianceView(
            appliance_id=a.appliance_id,
            status=a.status,
            registered_at=a.registered_at,
            order_id=next((o for o, i in on_plan.items() if i == a.appliance_id), None),
            license_status=e.status,
            edition=e.edition,
            moved_at=a.moved_at,
        )
