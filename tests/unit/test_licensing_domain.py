"""L1-L8: the customer's entitlement, registration, appliances, moves, expiry and suspension
(services/licensing/domain/)."""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.licensing.domain.customer import Customer
from services.licensing.domain.policy import Policy
from services.licensing.domain.rate_limits import retry_after
from services.licensing.domain.registration import TOKENS_KEPT, admit
from services.licensing.domain.views import licence_claims, status_view
from shared.basics.attempts import source_key, window_index
from shared.basics.catalogue import load_catalogue
from shared.basics.clock import utc_ms
from shared.basics.errors import ErrorCode, RateLimited, Refused
from shared.basics.money import Money
from shared.contracts.base import Event
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
from tests.unit.builders import PURE

E = TypeVar("E", bound=Event)

EMAIL = "jane@customer.example.com"
CAT = load_catalogue()
POLICY = Policy(catalogue=CAT)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def bound(
    order_id: str, edition: str, start: datetime, end: datetime, *, email: str = EMAIL
) -> PlanBound:
    return PlanBound(
        order_id=order_id,
        reseller_id="r-42",
        space="reseller",
        customer_email=email,
        edition=edition,
        billing="monthly",
        period_start=start,
        period_end=end,
        occurred_at=start,
        correlation_id=order_id,
    )


def customer_with(*plans: tuple[str, str, datetime, datetime]) -> Customer:
    customer = Customer(id=EMAIL)
    for i, (order_id, edition, start, end) in enumerate(plans):
        customer.add_plan(
            bound(order_id, edition, start, end), token=f"token-{i}", now=start, policy=POLICY
        )
    return customer


def one_plan(edition: str = "enterprise") -> Customer:
    return customer_with(("ol_a", edition, utc(2026, 1, 1), utc(2026, 2, 1)))


JAN_10 = utc(2026, 1, 10)


# --- L1: the email gains the edition; the highest wins --------------------------------


def test_l1_bound_plan_gives_its_edition_until_the_plan_ends() -> None:
    customer = one_plan("enterprise")
    entitlement = customer.entitlement(JAN_10, POLICY)
    assert entitlement.status == "active"
    assert entitlement.reason == "plan_active"
    assert entitlement.edition == "enterprise"
    assert entitlement.valid_until == utc(2026, 2, 1)


def test_l1_add_plan_records_unlocked_a_notification_with_token_and_the_change() -> None:
    customer = Customer(id=EMAIL)
    start = utc(2026, 1, 1)
    customer.add_plan(
        bound("ol_a", "starter", start, utc(2026, 2, 1)),
        token="tok-secret",
        now=start,
        policy=POLICY,
    )
    unlocked, notification, changed = customer.recorded()
    assert isinstance(unlocked, LicenseUnlocked)
    assert unlocked.customer_email == EMAIL
    assert unlocked.edition == "starter"
    assert unlocked.valid_until == utc(2026, 2, 1)
    assert unlocked.correlation_id == "ol_a"
    assert isinstance(notification, CustomerNotification)
    assert notification.kind == "plan_bound"
    assert notification.registration_token == "tok-secret"
    assert notification.correlation_id == "ol_a"
    assert isinstance(changed, LicenseChanged)
    assert (changed.previous_edition, changed.edition, changed.reason) == (
        "free",
        "starter",
        "plan_bound",
    )


def test_l1_same_plan_bound_twice_is_added_once() -> None:
    customer = one_plan()
    customer.add_plan(
        bound("ol_a", "enterprise", utc(2026, 1, 1), utc(2026, 2, 1)),
        token="again",
        now=JAN_10,
        policy=POLICY,
    )
    assert [p.order_id for p in customer.plans] == ["ol_a"]
    assert len(customer.recorded()) == 3
    assert customer.token_matches("again") is False


def test_l1_highest_edition_among_several_active_plans_wins() -> None:
    customer = customer_with(
        ("ol_s", "starter", utc(2026, 1, 1), utc(2027, 1, 1)),
        ("ol_p", "premium", utc(2026, 1, 1), utc(2026, 2, 1)),
        ("ol_e", "enterprise", utc(2026, 1, 1), utc(2026, 3, 1)),
    )
    entitlement = customer.entitlement(JAN_10, POLICY)
    assert entitlement.edition == "premium"
    assert entitlement.valid_until == utc(2026, 2, 1)


def test_l1_next_highest_edition_when_the_highest_plan_ends() -> None:
    customer = customer_with(
        ("ol_s", "starter", utc(2026, 1, 1), utc(2027, 1, 1)),
        ("ol_p", "premium", utc(2026, 1, 1), utc(2026, 2, 1)),
        ("ol_e", "enterprise", utc(2026, 1, 1), utc(2026, 3, 1)),
    )
    at_feb = customer.entitlement(utc(2026, 2, 1), POLICY)
    assert (at_feb.edition, at_feb.valid_until) == ("enterprise", utc(2026, 3, 1))
    at_march = customer.entitlement(utc(2026, 3, 15), POLICY)
    assert (at_march.edition, at_march.valid_until) == ("starter", utc(2027, 1, 1))


def test_l1_valid_until_is_the_latest_end_among_plans_of_the_winning_edition() -> None:
    customer = customer_with(
        ("ol_1", "enterprise", utc(2026, 1, 1), utc(2026, 2, 1)),
        ("ol_2", "enterprise", utc(2026, 1, 5), utc(2026, 2, 5)),
    )
    assert customer.entitlement(JAN_10, POLICY).valid_until == utc(2026, 2, 5)


def test_l1_plan_not_started_yet_gives_nothing() -> None:
    customer = customer_with(("ol_a", "premium", utc(2026, 2, 1), utc(2026, 3, 1)))
    entitlement = customer.entitlement(JAN_10, POLICY)
    assert entitlement.status == "expired"
    assert entitlement.edition == "free"


# --- L4 / L7: statuses and support ---------------------------------------------------


def test_l4_no_plan_is_free_with_reason_no_plan() -> None:
    entitlement = Customer(id=EMAIL).entitlement(JAN_10, POLICY)
    assert (entitlement.status, entitlement.reason, entitlement.edition) == (
        "expired",
        "no_plan",
        "free",
    )
    assert entitlement.valid_until is None
    assert entitlement.support is False


def test_l6_grace_at_the_period_end_then_expired_when_the_grace_ends() -> None:
    customer = one_plan()
    just_before = customer.entitlement(utc(2026, 2, 1) - timedelta(milliseconds=1), POLICY)
    assert just_before.status == "active"
    at_end = customer.entitlement(utc(2026, 2, 1), POLICY)
    assert (at_end.status, at_end.reason, at_end.edition, at_end.valid_until) == (
        "grace",
        "grace_period",
        "enterprise",
        utc(2026, 2, 8),
    )
    assert at_end.support is False
    after_grace = customer.entitlement(utc(2026, 2, 8), POLICY)
    assert (after_grace.status, after_grace.reason, after_grace.edition) == (
        "expired",
        "plan_ended",
        "free",
    )
    assert after_grace.valid_until is None


def test_l6_without_grace_the_plan_expires_at_its_end() -> None:
    no_grace = Policy(catalogue=CAT, grace=timedelta(0))
    at_end = one_plan().entitlement(utc(2026, 2, 1), no_grace)
    assert (at_end.status, at_end.reason, at_end.edition) == ("expired", "plan_ended", "free")


def test_l4_suspended_licence_unlocks_free_only() -> None:
    customer = one_plan()
    customer.suspended = True
    entitlement = customer.entitlement(JAN_10, POLICY)
    assert (entitlement.status, entitlement.reason, entitlement.edition) == (
        "suspended",
        "license_suspended",
        "free",
    )
    assert entitlement.support is False


def test_l4_unknown_appliance_is_not_registered() -> None:
    entitlement = one_plan().appliance_entitlement("xoa-unknown", JAN_10, POLICY)
    assert (entitlement.status, entitlement.reason, entitlement.edition) == (
        "not_registered",
        "appliance_not_registered",
        "free",
    )


def test_l4_registered_appliance_gets_the_customer_entitlement() -> None:
    customer = one_plan("premium")
    customer.register(appliance_id="xoa-1", secret="s1", move=False, now=JAN_10, policy=POLICY)
    entitlement = customer.appliance_entitlement("xoa-1", JAN_10, POLICY)
    assert (entitlement.status, entitlement.edition) == ("active", "premium")


def test_l7_support_only_while_active() -> None:
    customer = one_plan()
    assert customer.entitlement(JAN_10, POLICY).support is True
    assert customer.entitlement(utc(2026, 2, 2), POLICY).support is False


def test_l7_status_view_reports_support_and_no_secret() -> None:
    customer = one_plan("starter")
    customer.register(appliance_id="xoa-1", secret="s1", move=False, now=JAN_10, policy=POLICY)
    view = status_view(customer, JAN_10, POLICY)
    assert view.customer_email == EMAIL
    assert (view.edition, view.status, view.support) == ("starter", "active", True)
    assert [(p.order_id, p.appliance_id) for p in view.plans] == [("ol_a", "xoa-1")]
    assert [a.appliance_id for a in view.appliances] == ["xoa-1"]
    assert "secret_hash" not in view.model_dump_json()


# --- L2: registration tokens -----------------------------------------------------------


def test_l2_token_matches_only_a_kept_token() -> None:
    customer = one_plan()
    assert customer.token_matches("token-0") is True
    assert customer.token_matches("token-1") is False
    assert customer.token_matches("") is False


def test_l2_tokens_are_kept_only_as_digests() -> None:
    customer = one_plan()
    assert [t.token_hash for t in customer.tokens] == [hashlib.sha256(b"token-0").hexdigest()]


def test_l2_customer_without_tokens_matches_nothing() -> None:
    assert Customer(id=EMAIL).token_matches("token-0") is False


def test_l2_customer_without_tokens_matches_no_token_at_all() -> None:
    assert Customer(id=EMAIL).token_matches("xo-reseller: no such customer") is False


def test_l2_only_the_last_tokens_are_kept() -> None:
    start = utc(2026, 1, 1)
    plans = [(f"ol_{i}", "starter", start, utc(2026, 2, 1)) for i in range(TOKENS_KEPT + 1)]
    customer = customer_with(*plans)
    assert len(customer.tokens) == TOKENS_KEPT
    assert customer.token_matches("token-0") is False
    assert customer.token_matches("token-1") is True
    assert customer.token_matches(f"token-{TOKENS_KEPT}") is True


def test_l2_the_token_check_does_the_same_work_for_no_one_or_all_kept_tokens(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No enumeration by timing: an unknown email (no tokens), a customer with one token
    and one with every kept token cost the same digest comparisons."""
    compared: list[str] = []

    def compare(given: str, expected: str) -> bool:
        compared.append(expected)
        return given == expected

    monkeypatch.setattr(hmac, "compare_digest", compare)  # as registration calls it
    start = utc(2026, 1, 1)
    full = customer_with(
        *[(f"ol_{i}", "starter", start, utc(2026, 2, 1)) for i in range(TOKENS_KEPT)]
    )
    work = []
    for customer in (Customer(id=EMAIL), one_plan(), full):
        compared.clear()
        customer.token_matches("a guess")
        work.append(len(compared))
    assert work == [TOKENS_KEPT] * 3
    assert full.token_matches(f"token-{TOKENS_KEPT - 1}") is True


@pytest.mark.parametrize(
    ("token_valid", "email_wait", "refused"),
    [
        (True, None, None),
        (True, 600, None),  # the right token passes the email's limit (lockout)
        (False, None, ErrorCode.INVALID_REGISTRATION),
        (False, 600, ErrorCode.TOO_MANY_ATTEMPTS),
    ],
)
def test_l2_past_the_email_limit_only_the_right_token_is_admitted(
    token_valid: bool, email_wait: int | None, refused: ErrorCode | None
) -> None:
    if refused is None:
        admit(token_valid=token_valid, email_wait=email_wait)
        return
    with pytest.raises(Refused) as raised:
        admit(token_valid=token_valid, email_wait=email_wait)
    assert raised.value.code == refused
    assert getattr(raised.value, "retry_after", None) == email_wait


# --- L5: one appliance per plan ---------------------------------------------------------


def test_l5_register_attaches_the_appliance_to_the_plan() -> None:
    customer = one_plan()
    customer.register(appliance_id="xoa-1", secret="s1", move=False, now=JAN_10, policy=POLICY)
    assert {a: p.order_id for a, p in customer.allocation(JAN_10, POLICY).items()} == {
        "xoa-1": "ol_a"
    }
    assert [(a.appliance_id, a.status) for a in customer.appliances] == [("xoa-1", "active")]
    registered = customer.recorded()[-1]
    assert isinstance(registered, ApplianceRegistered)
    assert registered.appliance_id == "xoa-1"
    assert registered.order_id == "ol_a"
    assert registered.correlation_id == "ol_a"


def test_l5_register_without_an_active_plan_is_refused() -> None:
    customer = one_plan()
    with pytest.raises(Refused) as refused:
        customer.register(
            appliance_id="xoa-1", secret="s1", move=False, now=utc(2026, 3, 1), policy=POLICY
        )
    assert refused.value.code == ErrorCode.NO_ACTIVE_PLAN
    assert customer.appliances == []


def test_l5_second_appliance_on_one_plan_is_refused_with_plan_in_use() -> None:
    customer = one_plan()
    customer.register(appliance_id="xoa-1", secret="s1", move=False, now=JAN_10, policy=POLICY)
    with pytest.raises(Refused) as refused:
        customer.register(appliance_id="xoa-2", secret="s2", move=False, now=JAN_10, policy=POLICY)
    assert refused.value.code == ErrorCode.PLAN_IN_USE
    assert [a.appliance_id for a in customer.appliances] == ["xoa-1"]
    assert customer.appliance_entitlement("xoa-2", JAN_10, POLICY).status == "not_registered"


def test_l5_move_releases_the_previous_appliance() -> None:
    customer = one_plan("premium")
    customer.register(appliance_id="xoa-1", secret="s1", move=False, now=JAN_10, policy=POLICY)
    later = JAN_10 + timedelta(days=1)
    customer.register(appliance_id="xoa-2", secret="s2", move=True, now=later, policy=POLICY)
    assert {a: p.order_id for a, p in customer.allocation(later, POLICY).items()} == {
        "xoa-2": "ol_a"
    }
    statuses = {a.appliance_id: a.status for a in customer.appliances}
    assert statuses == {"xoa-1": "moved", "xoa-2": "active"}
    old = customer.appliance_entitlement("xoa-1", later, POLICY)
    assert (old.status, old.reason, old.edition) == (
        "moved",
        "license_moved_to_another_appliance",
        "free",
    )
    assert old.support is False
    new = customer.appliance_entitlement("xoa-2", later, POLICY)
    assert (new.status, new.edition) == ("active", "premium")
    moved = [e for e in customer.recorded() if isinstance(e, ApplianceMoved)]
    assert len(moved) == 1
    assert (moved[0].from_appliance_id, moved[0].to_appliance_id) == ("xoa-1", "xoa-2")
    assert moved[0].order_id == "ol_a"
    assert moved[0].correlation_id == "ol_a"
    assert moved[0].occurred_at == later


def test_l5_reregistering_the_same_appliance_rotates_its_secret() -> None:
    customer = one_plan()
    customer.register(appliance_id="xoa-1", secret="s1", move=False, now=JAN_10, policy=POLICY)
    events_before = len(customer.recorded())
    customer.register(appliance_id="xoa-1", secret="s2", move=False, now=JAN_10, policy=POLICY)
    assert customer.secret_matches("xoa-1", "s2") is True
    assert customer.secret_matches("xoa-1", "s1") is False
    assert len(customer.appliances) == 1
    assert len(customer.recorded()) == events_before


def test_l5_each_plan_takes_one_appliance_highest_first() -> None:
    customer = customer_with(
        ("ol_s", "starter", utc(2026, 1, 1), utc(2026, 2, 1)),
        ("ol_p", "premium", utc(2026, 1, 1), utc(2026, 2, 1)),
    )
    customer.register(appliance_id="xoa-1", secret="s1", move=False, now=JAN_10, policy=POLICY)
    customer.register(appliance_id="xoa-2", secret="s2", move=False, now=JAN_10, policy=POLICY)
    assert {a: p.order_id for a, p in customer.allocation(JAN_10, POLICY).items()} == {
        "xoa-1": "ol_p",
        "xoa-2": "ol_s",
    }
    with pytest.raises(Refused) as refused:
        customer.register(appliance_id="xoa-3", secret="s3", move=False, now=JAN_10, policy=POLICY)
    assert refused.value.code == ErrorCode.PLAN_IN_USE


def test_l5_one_plan_never_unlocks_two_appliances_after_a_renewal() -> None:
    customer = customer_with(
        ("ol_jan", "starter", utc(2026, 1, 1), utc(2026, 2, 1)),
        ("ol_feb", "starter", utc(2026, 2, 1), utc(2026, 3, 1)),
    )
    customer.register(appliance_id="xoa-1", secret="s1", move=False, now=JAN_10, policy=POLICY)
    feb_10 = utc(2026, 2, 10)  # January's plan and its grace are over: one plan is active
    with pytest.raises(Refused) as refused:
        customer.register(appliance_id="xoa-2", secret="s2", move=False, now=feb_10, policy=POLICY)
    assert refused.value.code == ErrorCode.PLAN_IN_USE
    # The renewal reached the appliance that ran on January's plan, without re-registering.
    assert {a: p.order_id for a, p in customer.allocation(feb_10, POLICY).items()} == {
        "xoa-1": "ol_feb"
    }
    assert customer.appliance_entitlement("xoa-1", feb_10, POLICY).status == "active"
    assert customer.appliance_entitlement("xoa-2", feb_10, POLICY).status == "not_registered"


# --- Appliance secrets ------------------------------------------------------------------


def test_l4_secret_matches_only_the_right_secret_of_a_known_appliance() -> None:
    customer = one_plan()
    customer.register(appliance_id="xoa-1", secret="s1", move=False, now=JAN_10, policy=POLICY)
    assert customer.secret_matches("xoa-1", "s1") is True
    assert customer.secret_matches("xoa-1", "s2") is False
    assert customer.secret_matches("xoa-2", "s1") is False
    assert customer.secret_matches("xoa-2", "xo-reseller: no such customer") is False
    assert all(a.secret_hash != "s1" for a in customer.appliances)


# --- helpers for the rules below ----------------------------------------------------------


def upgraded(
    new: str, previous: str, edition: str, at: datetime, end: datetime, *, email: str = EMAIL
) -> PlanUpgraded:
    return PlanUpgraded(
        order_id=new,
        reseller_id="r-42",
        previous_order_id=previous,
        customer_email=email,
        edition=edition,
        billing="monthly",
        period_start=at,
        period_end=end,
        credit_note=Money(amount=1000, currency="EUR"),
        occurred_at=at,
        correlation_id=new,
    )


def superseded(old: str, by: str, at: datetime, *, email: str = EMAIL) -> PlanSuperseded:
    return PlanSuperseded(
        order_id=old,
        reseller_id="r-42",
        superseded_by=by,
        customer_email=email,
        occurred_at=at,
        correlation_id=old,
    )


def events_of(customer: Customer, kind: type[E]) -> list[E]:
    return [e for e in customer.recorded() if isinstance(e, kind)]


def registered(customer: Customer, *appliances: str, now: datetime = JAN_10) -> Customer:
    for appliance_id in appliances:
        customer.register(
            appliance_id=appliance_id,
            secret=f"s-{appliance_id}",
            move=False,
            now=now,
            policy=POLICY,
        )
    return customer


def move(customer: Customer, appliance_id: str, now: datetime) -> None:
    customer.register(
        appliance_id=appliance_id, secret=f"s-{appliance_id}", move=True, now=now, policy=POLICY
    )


def run_checks(customer: Customer, *moments: datetime, policy: Policy = POLICY) -> None:
    for moment in moments:
        customer.check(moment, policy)


# --- L1 / O7: several plans, upgrades -----------------------------------------------------


def test_l1_upgrade_changes_the_edition_of_the_registered_appliance_without_reregistering() -> None:
    customer = registered(one_plan("starter"), "xoa-1")
    customer.outbox.clear()
    customer.upgrade(
        upgraded("ol_up", "ol_a", "premium", JAN_10, utc(2026, 2, 10)), now=JAN_10, policy=POLICY
    )
    entitlement = customer.appliance_entitlement("xoa-1", JAN_10, POLICY)
    assert (entitlement.status, entitlement.edition) == ("active", "premium")
    assert entitlement.valid_until == utc(2026, 2, 10)
    [changed] = events_of(customer, LicenseChanged)
    assert (changed.previous_edition, changed.edition, changed.reason, changed.order_id) == (
        "starter",
        "premium",
        "plan_upgraded",
        "ol_up",
    )
    assert [u.order_id for u in events_of(customer, LicenseUnlocked)] == ["ol_up"]


def test_l1_upgraded_plan_ends_at_the_upgrade_without_grace_warning_or_expiry() -> None:
    customer = one_plan("starter")
    customer.upgrade(
        upgraded("ol_up", "ol_a", "premium", JAN_10, utc(2026, 2, 10)), now=JAN_10, policy=POLICY
    )
    old = next(p for p in customer.plans if p.order_id == "ol_a")
    assert (old.ended_at, old.superseded_by) == (JAN_10, "ol_up")
    assert old.state_at(JAN_10, POLICY) == "superseded"
    assert old.grace_until(POLICY) is None
    customer.outbox.clear()
    run_checks(customer, utc(2026, 1, 31), utc(2026, 2, 1), utc(2026, 2, 5))
    assert all(e.order_id != "ol_a" for e in events_of(customer, LicenseExpiring))
    assert events_of(customer, LicenseExpired) == []


@pytest.mark.parametrize("upgraded_first", [True, False])
def test_l1_upgrade_and_superseded_may_arrive_in_either_order(upgraded_first: bool) -> None:
    customer = registered(one_plan("starter"), "xoa-1")
    up = upgraded("ol_up", "ol_a", "enterprise", JAN_10, utc(2026, 2, 10))
    sup = superseded("ol_a", "ol_up", JAN_10 - timedelta(seconds=1))
    steps: list[Callable[[], None]] = [
        lambda: customer.upgrade(up, now=JAN_10, policy=POLICY),
        lambda: customer.supersede(sup, now=JAN_10, policy=POLICY),
    ]
    for step in steps if upgraded_first else reversed(steps):
        step()
    old = next(p for p in customer.plans if p.order_id == "ol_a")
    assert (old.ended_at, old.superseded_by) == (JAN_10 - timedelta(seconds=1), "ol_up")
    assert customer.pending_ends == {}
    assert customer.appliance_entitlement("xoa-1", JAN_10, POLICY).edition == "enterprise"
    # Never a moment without an edition in between: free -> starter -> enterprise.
    changes = [(c.previous_edition, c.edition) for c in events_of(customer, LicenseChanged)]
    assert changes == [("free", "starter"), ("starter", "enterprise")]


def test_l1_superseded_alone_keeps_the_plan_until_its_successor_is_known() -> None:
    customer = registered(one_plan("starter"), "xoa-1")
    customer.supersede(superseded("ol_a", "ol_up", JAN_10), now=JAN_10, policy=POLICY)
    assert customer.appliance_entitlement("xoa-1", JAN_10, POLICY).edition == "starter"
    assert customer.plans[0].ended_at is None
    customer.upgrade(
        upgraded("ol_up", "ol_a", "premium", JAN_10, utc(2026, 2, 10)), now=JAN_10, policy=POLICY
    )
    assert customer.appliance_entitlement("xoa-1", JAN_10, POLICY).edition == "premium"
    assert customer.plans[0].ended_at == JAN_10


def test_l1_upgrade_redelivered_or_repeated_changes_nothing_twice() -> None:
    customer = one_plan("starter")
    up = upgraded("ol_up", "ol_a", "premium", JAN_10, utc(2026, 2, 10))
    customer.upgrade(up, now=JAN_10, policy=POLICY)
    before = len(customer.recorded())
    customer.upgrade(up, now=JAN_10 + timedelta(minutes=1), policy=POLICY)
    customer.supersede(superseded("ol_a", "ol_up", JAN_10), now=JAN_10, policy=POLICY)
    assert len(customer.recorded()) == before
    assert [p.order_id for p in customer.plans] == ["ol_a", "ol_up"]


def test_l1_superseded_before_its_plan_is_known_ends_it_when_it_arrives() -> None:
    customer = Customer(id=EMAIL)
    customer.supersede(superseded("ol_a", "ol_up", JAN_10), now=JAN_10, policy=POLICY)
    customer.upgrade(
        upgraded("ol_up", "ol_a", "premium", JAN_10, utc(2026, 2, 10)), now=JAN_10, policy=POLICY
    )
    customer.add_plan(
        bound("ol_a", "starter", utc(2026, 1, 1), utc(2026, 2, 1)),
        token="t",
        now=JAN_10,
        policy=POLICY,
    )
    old = next(p for p in customer.plans if p.order_id == "ol_a")
    assert old.ended_at == JAN_10
    assert customer.pending_ends == {}
    assert customer.entitlement(JAN_10, POLICY).edition == "premium"


def test_l1_when_the_highest_plan_ends_the_next_applies_at_once_and_is_announced() -> None:
    customer = customer_with(
        ("ol_p", "premium", utc(2026, 1, 1), utc(2026, 2, 1)),
        ("ol_s", "starter", utc(2026, 1, 1), utc(2026, 6, 1)),
    )
    registered(customer, "xoa-1")
    customer.outbox.clear()
    feb_1 = utc(2026, 2, 1)
    assert customer.next_check_at is not None and customer.next_check_at <= feb_1
    run_checks(customer, feb_1)
    entitlement = customer.appliance_entitlement("xoa-1", feb_1, POLICY)
    assert (entitlement.status, entitlement.edition) == ("active", "starter")
    [changed] = events_of(customer, LicenseChanged)
    assert (changed.previous_edition, changed.edition, changed.reason) == (
        "premium",
        "starter",
        "plan_ended",
    )


def test_l1_a_plan_starting_later_is_announced_when_it_starts() -> None:
    customer = Customer(id=EMAIL)
    customer.add_plan(
        bound("ol_f", "enterprise", utc(2026, 2, 1), utc(2026, 3, 1)),
        token="t",
        now=JAN_10,
        policy=POLICY,
    )
    assert customer.entitlement(JAN_10, POLICY).reason == "plan_not_started"
    assert events_of(customer, LicenseChanged) == []
    assert customer.next_check_at == utc(2026, 2, 1)
    run_checks(customer, utc(2026, 2, 1))
    [changed] = events_of(customer, LicenseChanged)
    assert (changed.edition, changed.reason) == ("enterprise", "plan_started")


# --- L4: reason codes ----------------------------------------------------------------------


def test_l4_appliance_without_a_plan_while_others_use_them_says_all_plans_in_use() -> None:
    customer = customer_with(
        ("ol_1", "starter", utc(2026, 1, 1), utc(2026, 2, 1)),
        ("ol_2", "starter", utc(2026, 1, 1), utc(2026, 3, 1)),
    )
    registered(customer, "xoa-1", "xoa-2")
    after_grace = utc(2026, 2, 9)
    junior = customer.appliance_entitlement("xoa-2", after_grace, POLICY)
    assert (junior.status, junior.reason, junior.edition) == ("expired", "all_plans_in_use", "free")
    senior = customer.appliance_entitlement("xoa-1", after_grace, POLICY)
    assert (senior.status, senior.edition) == ("active", "starter")


# --- L6: warnings, expiry, grace -------------------------------------------------------------


ANNUAL_END = utc(2027, 1, 1)


def annual() -> Customer:
    return customer_with(("ol_y", "enterprise", utc(2026, 1, 1), ANNUAL_END))


def test_l6_expiring_warnings_at_30_7_and_1_days_once_each() -> None:
    customer = annual()
    customer.outbox.clear()
    moments = [ANNUAL_END - timedelta(days=d) for d in (30, 7, 1)]
    assert customer.next_check_at == moments[0]
    for moment in moments:
        run_checks(customer, moment - timedelta(milliseconds=1), moment, moment)
    warnings = events_of(customer, LicenseExpiring)
    assert [(w.days_left, w.order_id, w.period_end) for w in warnings] == [
        (30, "ol_y", ANNUAL_END),
        (7, "ol_y", ANNUAL_END),
        (1, "ol_y", ANNUAL_END),
    ]
    notes = events_of(customer, CustomerNotification)
    assert [(n.kind, n.days_left) for n in notes] == [("license_expiring", d) for d in (30, 7, 1)]
    assert customer.next_check_at == ANNUAL_END


def test_l6_expired_at_the_end_then_free_after_the_grace_once_each() -> None:
    customer = annual()
    registered(customer, "xoa-1")
    customer.outbox.clear()
    run_checks(customer, ANNUAL_END, ANNUAL_END + timedelta(hours=1))
    [expired] = events_of(customer, LicenseExpired)
    assert (expired.order_id, expired.edition, expired.grace_until) == (
        "ol_y",
        "enterprise",
        ANNUAL_END + timedelta(days=7),
    )
    in_grace = customer.appliance_entitlement("xoa-1", ANNUAL_END + timedelta(days=3), POLICY)
    assert (in_grace.status, in_grace.reason, in_grace.edition, in_grace.support) == (
        "grace",
        "grace_period",
        "enterprise",
        False,
    )
    assert events_of(customer, LicenseChanged) == []  # the edition stays through the grace
    assert customer.next_check_at == ANNUAL_END + timedelta(days=7)
    run_checks(customer, ANNUAL_END + timedelta(days=7), ANNUAL_END + timedelta(days=8))
    [changed] = events_of(customer, LicenseChanged)
    assert (changed.previous_edition, changed.edition) == ("enterprise", "free")
    after = customer.appliance_entitlement("xoa-1", ANNUAL_END + timedelta(days=7), POLICY)
    assert (after.status, after.reason, after.edition) == ("expired", "plan_ended", "free")
    assert customer.next_check_at is None
    assert len(events_of(customer, LicenseExpired)) == 1


def test_l6_missed_warnings_collapse_into_the_nearest_with_the_real_days_left() -> None:
    customer = annual()
    customer.outbox.clear()
    run_checks(customer, ANNUAL_END - timedelta(days=5))  # the job was down for weeks
    [warning] = events_of(customer, LicenseExpiring)
    assert warning.days_left == 5
    assert customer.plans[0].warnings_sent == [30, 7]


def test_l6_no_warning_due_before_the_plan_started() -> None:
    customer = customer_with(("ol_feb", "starter", utc(2026, 2, 1), utc(2026, 3, 1)))  # 28 days
    run_checks(customer, utc(2026, 2, 1), utc(2026, 2, 2))
    assert events_of(customer, LicenseExpiring) == []
    assert customer.plans[0].warnings_sent == [30]
    run_checks(customer, utc(2026, 2, 22))
    assert [w.days_left for w in events_of(customer, LicenseExpiring)] == [7]


def test_l6_a_renewed_plan_gets_no_warning_and_no_expiry() -> None:
    customer = annual()
    customer.add_plan(  # the renewal, bought in the summer, starts when the plan ends
        bound("ol_2", "enterprise", ANNUAL_END, utc(2028, 1, 1)),
        token="t2",
        now=utc(2026, 7, 1),
        policy=POLICY,
    )
    customer.outbox.clear()
    run_checks(customer, *(ANNUAL_END - timedelta(days=d) for d in (30, 7, 1, 0)))
    run_checks(customer, ANNUAL_END + timedelta(days=8))
    assert events_of(customer, LicenseExpiring) == []
    assert events_of(customer, LicenseExpired) == []
    assert events_of(customer, LicenseChanged) == []
    assert customer.entitlement(ANNUAL_END + timedelta(days=8), POLICY).edition == "enterprise"


def test_l6_a_lower_plan_running_on_does_not_hide_the_warning() -> None:
    customer = customer_with(
        ("ol_p", "premium", utc(2026, 1, 1), ANNUAL_END),
        ("ol_s", "starter", utc(2026, 1, 1), utc(2028, 1, 1)),
    )
    customer.outbox.clear()
    run_checks(customer, ANNUAL_END - timedelta(days=7))
    assert [(w.order_id, w.days_left) for w in events_of(customer, LicenseExpiring)] == [
        ("ol_p", 7)
    ]


def test_l6_next_check_at_is_always_the_earliest_moment_something_is_due() -> None:
    customer = annual()
    seen = []
    while customer.next_check_at is not None:
        seen.append(customer.next_check_at)
        customer.check(customer.next_check_at, POLICY)
    assert seen == [
        ANNUAL_END - timedelta(days=30),
        ANNUAL_END - timedelta(days=7),
        ANNUAL_END - timedelta(days=1),
        ANNUAL_END,
        ANNUAL_END + timedelta(days=7),
    ]


def test_l6_the_appliance_whose_plan_ended_keeps_it_through_grace_the_other_keeps_its_own() -> None:
    customer = customer_with(
        ("ol_p", "premium", utc(2026, 1, 1), utc(2026, 2, 1)),
        ("ol_s", "starter", utc(2026, 1, 1), utc(2026, 6, 1)),
    )
    registered(customer, "xoa-1", "xoa-2")
    feb_3 = utc(2026, 2, 3)
    first = customer.appliance_entitlement("xoa-1", feb_3, POLICY)
    second = customer.appliance_entitlement("xoa-2", feb_3, POLICY)
    assert (first.status, first.edition) == ("grace", "premium")
    assert (second.status, second.edition) == ("active", "starter")


# --- L3: what the licence says -----------------------------------------------------------------


@PURE
@given(
    offset=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=40)),
    grace_days=st.integers(min_value=0, max_value=30),
    offline_days=st.integers(min_value=1, max_value=60),
)
def test_l3_licence_valid_until_never_passes_plan_end_plus_grace_nor_the_offline_limit(
    offset: timedelta, grace_days: int, offline_days: int
) -> None:
    policy = Policy(
        catalogue=CAT, grace=timedelta(days=grace_days), offline_validity=timedelta(offline_days)
    )
    customer = one_plan()
    customer.register(appliance_id="xoa-1", secret="s", move=False, now=JAN_10, policy=policy)
    now = utc_ms(utc(2026, 1, 1) + offset)
    entitlement = customer.appliance_entitlement("xoa-1", now, policy)
    claims = licence_claims(customer, "xoa-1", entitlement, now, policy, key_id="k_test")
    if entitlement.edition == "free":
        assert claims.valid_until is None
        return
    assert claims.valid_until is not None
    assert claims.valid_until <= utc(2026, 2, 1) + timedelta(days=grace_days)
    assert claims.valid_until <= now + timedelta(days=offline_days)
    assert claims.valid_until > now
    assert claims.status == entitlement.status


def test_l3_a_licence_issued_in_grace_says_so() -> None:
    customer = registered(one_plan(), "xoa-1")
    now = utc(2026, 2, 3)
    entitlement = customer.appliance_entitlement("xoa-1", now, POLICY)
    claims = licence_claims(customer, "xoa-1", entitlement, now, POLICY, key_id="k_test")
    assert (claims.status, claims.reason, claims.edition) == ("grace", "grace_period", "enterprise")
    assert claims.grace_until == claims.valid_until == utc(2026, 2, 8)
    assert claims.period_end == utc(2026, 2, 1)
    assert claims.support is False
    assert (claims.customer_email, claims.appliance_id, claims.order_id) == (
        EMAIL,
        "xoa-1",
        "ol_a",
    )
    assert (claims.issued_at, claims.key_id) == (now, "k_test")


# --- L2: token re-issue and the attempt limits ---------------------------------------------


def test_l2_reissued_token_replaces_every_earlier_one_and_reaches_the_mailer() -> None:
    customer = customer_with(
        ("ol_1", "starter", utc(2026, 1, 1), utc(2026, 2, 1)),
        ("ol_2", "premium", utc(2026, 1, 1), utc(2026, 2, 1)),
    )
    customer.outbox.clear()
    revoked = customer.reissue_token(token="fresh", now=JAN_10, policy=POLICY)
    assert revoked == 2
    assert customer.token_matches("fresh") is True
    assert customer.token_matches("token-0") is False
    assert customer.token_matches("token-1") is False
    [note] = events_of(customer, CustomerNotification)
    assert (note.kind, note.registration_token, note.edition) == (
        "registration_token_reissued",
        "fresh",
        "premium",
    )
    assert all(t.token_hash != "fresh" for t in customer.tokens)


WINDOW = timedelta(minutes=15)
W0 = utc(2026, 1, 1)  # a window boundary (15 minutes divide a day)


def test_l2_attempts_up_to_the_limit_pass_and_the_next_one_waits_for_the_window() -> None:
    assert retry_after(previous=0, current=5, limit=5, window=WINDOW, now=W0) is None
    wait = retry_after(previous=0, current=6, limit=5, window=WINDOW, now=W0)
    # The sixth attempt of a fresh window: a new one passes once 1 - 4/6 of it slid out.
    assert wait == math.ceil(15 * 60 + (1 - 4 / 6) * 15 * 60)


def test_l2_the_previous_window_counts_by_the_part_still_inside_the_sliding_window() -> None:
    halfway = W0 + WINDOW / 2
    assert retry_after(previous=10, current=1, limit=5, window=WINDOW, now=halfway) == math.ceil(
        (1 - 3 / 10 - 0.5) * 15 * 60
    )
    assert retry_after(previous=8, current=1, limit=5, window=WINDOW, now=halfway) is None


@PURE
@given(
    previous=st.integers(min_value=0, max_value=50),
    current=st.integers(min_value=1, max_value=50),
    limit=st.integers(min_value=1, max_value=20),
    into=st.integers(min_value=0, max_value=899),
)
def test_l2_retry_after_is_exactly_when_the_next_attempt_passes(
    previous: int, current: int, limit: int, into: int
) -> None:
    now = W0 + timedelta(seconds=into)
    wait = retry_after(previous=previous, current=current, limit=limit, window=WINDOW, now=now)
    if wait is None:
        return

    def passes(later: datetime) -> bool:
        shifted = window_index(later, WINDOW) - window_index(now, WINDOW)
        counts = {0: (previous, current + 1), 1: (current, 1)}.get(shifted, (0, 1))
        decision = retry_after(
            previous=counts[0], current=counts[1], limit=limit, window=WINDOW, now=later
        )
        return decision is None

    assert passes(now + timedelta(seconds=wait))
    assert wait == 1 or not passes(now + timedelta(seconds=wait - 1))


def test_l2_an_ipv6_site_counts_as_one_source_an_ipv4_address_as_itself() -> None:
    assert (
        source_key("2001:db8:1:2::1") == source_key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    )
    assert source_key("2001:db8:1:3::1") != source_key("2001:db8:1:2::1")
    assert source_key("::ffff:192.0.2.7") == source_key("192.0.2.7") == "192.0.2.7"
    assert source_key("testclient") == "testclient"


# --- L5: moves are limited -----------------------------------------------------------------


def test_l5_moves_are_limited_per_30_days_with_the_time_to_wait() -> None:
    customer = registered(one_plan(), "xoa-0")
    for n in range(1, 4):
        move(customer, f"xoa-{n}", JAN_10 + timedelta(days=n))
    assert customer.moves_left(JAN_10 + timedelta(days=3), POLICY) == 0
    with pytest.raises(RateLimited) as refused:
        move(customer, "xoa-9", JAN_10 + timedelta(days=4))
    assert refused.value.code == ErrorCode.MOVE_LIMIT_REACHED
    # The first move (Jan 11) leaves the 30-day window on Feb 10: 27 days after Jan 14.
    assert refused.value.retry_after == 27 * 24 * 3600
    assert customer.appliance_entitlement("xoa-3", JAN_10 + timedelta(days=4), POLICY).status == (
        "active"
    )
    assert customer.appliance_entitlement("xoa-9", JAN_10, POLICY).status == "not_registered"


def test_l5_a_move_is_possible_again_once_the_oldest_left_the_window() -> None:
    customer = registered(
        customer_with(("ol_a", "enterprise", utc(2026, 1, 1), utc(2026, 6, 1))), "xoa-0"
    )
    for n in range(1, 4):
        move(customer, f"xoa-{n}", JAN_10 + timedelta(days=n))
    later = JAN_10 + timedelta(days=31)
    move(customer, "xoa-9", later)
    assert customer.appliance_entitlement("xoa-9", later, POLICY).status == "active"
    assert len(customer.moves) == 3  # only the last 30 days are kept


def test_l5_no_move_at_all_when_the_limit_is_zero() -> None:
    customer = registered(one_plan(), "xoa-0")
    no_moves = Policy(catalogue=CAT, moves_per_window=0)
    with pytest.raises(RateLimited) as refused:
        customer.register(appliance_id="xoa-1", secret="s", move=True, now=JAN_10, policy=no_moves)
    assert refused.value.retry_after == 30 * 24 * 3600


def test_l5_a_move_takes_over_an_active_plan_not_one_in_grace() -> None:
    customer = customer_with(
        ("ol_p", "premium", utc(2026, 1, 1), utc(2026, 2, 1)),
        ("ol_s", "starter", utc(2026, 1, 1), utc(2026, 6, 1)),
    )
    registered(customer, "xoa-1", "xoa-2")
    feb_3 = utc(2026, 2, 3)
    move(customer, "xoa-3", feb_3)
    statuses = {a.appliance_id: a.status for a in customer.appliances}
    assert statuses == {"xoa-1": "active", "xoa-2": "moved", "xoa-3": "active"}
    newcomer = customer.appliance_entitlement("xoa-3", feb_3, POLICY)
    assert (newcomer.status, newcomer.edition) == ("active", "starter")
    [moved] = events_of(customer, ApplianceMoved)
    assert (moved.from_appliance_id, moved.order_id) == ("xoa-2", "ol_s")


def test_l5_a_moved_appliance_comes_back_only_by_moving_again() -> None:
    customer = registered(one_plan(), "xoa-1")
    move(customer, "xoa-2", JAN_10)
    with pytest.raises(Refused) as refused:
        registered(customer, "xoa-1")
    assert refused.value.code == ErrorCode.PLAN_IN_USE
    move(customer, "xoa-1", JAN_10)
    assert customer.appliance_entitlement("xoa-1", JAN_10, POLICY).status == "active"
    assert customer.appliance_entitlement("xoa-2", JAN_10, POLICY).status == "moved"


# --- L8: suspension ------------------------------------------------------------------------


def test_l8_suspension_turns_every_appliance_to_free_and_reinstatement_restores_them() -> None:
    customer = registered(
        customer_with(
            ("ol_p", "premium", utc(2026, 1, 1), utc(2026, 2, 1)),
            ("ol_s", "starter", utc(2026, 1, 1), utc(2026, 2, 1)),
        ),
        "xoa-1",
        "xoa-2",
    )
    customer.outbox.clear()
    customer.suspend(reason="chargeback", now=JAN_10)
    for appliance_id in ("xoa-1", "xoa-2"):
        e = customer.appliance_entitlement(appliance_id, JAN_10, POLICY)
        assert (e.status, e.reason, e.edition, e.support) == (
            "suspended",
            "license_suspended",
            "free",
            False,
        )
    view = status_view(customer, JAN_10, POLICY)
    assert (view.status, view.suspension_reason) == ("suspended", "chargeback")
    customer.reinstate(reason="paid", now=JAN_10)
    e = customer.appliance_entitlement("xoa-1", JAN_10, POLICY)
    assert (e.status, e.edition) == ("active", "premium")
    [suspended] = events_of(customer, LicenseSuspended)
    [reinstated] = events_of(customer, LicenseReinstated)
    assert (suspended.reason, reinstated.reason) == ("chargeback", "paid")


def test_l8_suspending_twice_records_once_and_keeps_the_first_reason() -> None:
    customer = one_plan()
    customer.suspend(reason="fraud", now=JAN_10)
    customer.suspend(reason="again", now=JAN_10)
    assert len(events_of(customer, LicenseSuspended)) == 1
    assert customer.suspension_reason == "fraud"
    customer.reinstate(reason="ok", now=JAN_10)
    customer.reinstate(reason="ok again", now=JAN_10)
    assert len(events_of(customer, LicenseReinstated)) == 1


def test_l8_a_suspended_licence_registers_no_appliance() -> None:
    customer = one_plan()
    customer.suspend(reason="fraud", now=JAN_10)
    with pytest.raises(Refused) as refused:
        registered(customer, "xoa-1")
    assert refused.value.code == ErrorCode.LICENSE_SUSPENDED
    assert customer.appliances == []
