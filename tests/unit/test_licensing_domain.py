"""L1-L7: the customer's entitlement, registration and appliances (services/licensing/domain.py)."""

from __future__ import annotations

import contextlib
import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from services.licensing.domain import TOKENS_KEPT, Customer
from shared.catalogue import load_catalogue
from shared.contracts.licensing import (
    ApplianceMoved,
    ApplianceRegistered,
    CustomerNotification,
    LicenseUnlocked,
)
from shared.contracts.orders import PlanBound
from shared.errors import ErrorCode, Refused

EMAIL = "jane@customer.example.com"
CAT = load_catalogue()


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
        customer.add_plan(bound(order_id, edition, start, end), token=f"token-{i}", now=start)
    return customer


def one_plan(edition: str = "enterprise") -> Customer:
    return customer_with(("ol_a", edition, utc(2026, 1, 1), utc(2026, 2, 1)))


JAN_10 = utc(2026, 1, 10)


# --- L1: the email gains the edition; the highest wins --------------------------------


def test_l1_bound_plan_gives_its_edition_until_the_plan_ends() -> None:
    customer = one_plan("enterprise")
    entitlement = customer.entitlement(JAN_10, CAT)
    assert entitlement.status == "active"
    assert entitlement.reason == "plan_active"
    assert entitlement.edition == "enterprise"
    assert entitlement.valid_until == utc(2026, 2, 1)


def test_l1_add_plan_records_license_unlocked_and_a_notification_with_token() -> None:
    customer = Customer(id=EMAIL)
    start = utc(2026, 1, 1)
    customer.add_plan(
        bound("ol_a", "starter", start, utc(2026, 2, 1)), token="tok-secret", now=start
    )
    unlocked, notification = customer.recorded()
    assert isinstance(unlocked, LicenseUnlocked)
    assert unlocked.customer_email == EMAIL
    assert unlocked.edition == "starter"
    assert unlocked.valid_until == utc(2026, 2, 1)
    assert unlocked.correlation_id == "ol_a"
    assert isinstance(notification, CustomerNotification)
    assert notification.kind == "plan_bound"
    assert notification.registration_token == "tok-secret"
    assert notification.correlation_id == "ol_a"


def test_l1_same_plan_bound_twice_is_added_once() -> None:
    customer = one_plan()
    customer.add_plan(
        bound("ol_a", "enterprise", utc(2026, 1, 1), utc(2026, 2, 1)), token="again", now=JAN_10
    )
    assert [p.order_id for p in customer.plans] == ["ol_a"]
    assert len(customer.recorded()) == 2
    assert customer.token_matches("again") is False


def test_l1_highest_edition_among_several_active_plans_wins() -> None:
    customer = customer_with(
        ("ol_s", "starter", utc(2026, 1, 1), utc(2027, 1, 1)),
        ("ol_p", "premium", utc(2026, 1, 1), utc(2026, 2, 1)),
        ("ol_e", "enterprise", utc(2026, 1, 1), utc(2026, 3, 1)),
    )
    entitlement = customer.entitlement(JAN_10, CAT)
    assert entitlement.edition == "premium"
    assert entitlement.valid_until == utc(2026, 2, 1)


def test_l1_next_highest_edition_when_the_highest_plan_ends() -> None:
    customer = customer_with(
        ("ol_s", "starter", utc(2026, 1, 1), utc(2027, 1, 1)),
        ("ol_p", "premium", utc(2026, 1, 1), utc(2026, 2, 1)),
        ("ol_e", "enterprise", utc(2026, 1, 1), utc(2026, 3, 1)),
    )
    at_feb = customer.entitlement(utc(2026, 2, 1), CAT)
    assert (at_feb.edition, at_feb.valid_until) == ("enterprise", utc(2026, 3, 1))
    at_march = customer.entitlement(utc(2026, 3, 15), CAT)
    assert (at_march.edition, at_march.valid_until) == ("starter", utc(2027, 1, 1))


def test_l1_valid_until_is_the_latest_end_among_plans_of_the_winning_edition() -> None:
    customer = customer_with(
        ("ol_1", "enterprise", utc(2026, 1, 1), utc(2026, 2, 1)),
        ("ol_2", "enterprise", utc(2026, 1, 5), utc(2026, 2, 5)),
    )
    assert customer.entitlement(JAN_10, CAT).valid_until == utc(2026, 2, 5)


def test_l1_plan_not_started_yet_gives_nothing() -> None:
    customer = customer_with(("ol_a", "premium", utc(2026, 2, 1), utc(2026, 3, 1)))
    entitlement = customer.entitlement(JAN_10, CAT)
    assert entitlement.status == "expired"
    assert entitlement.edition == "free"


# --- L4 / L7: statuses and support ---------------------------------------------------


def test_l4_no_plan_is_free_with_reason_no_plan() -> None:
    entitlement = Customer(id=EMAIL).entitlement(JAN_10, CAT)
    assert (entitlement.status, entitlement.reason, entitlement.edition) == (
        "expired",
        "no_plan",
        "free",
    )
    assert entitlement.valid_until is None
    assert entitlement.support is False


def test_l4_expired_at_the_period_end() -> None:
    customer = one_plan()
    just_before = customer.entitlement(utc(2026, 2, 1) - timedelta(milliseconds=1), CAT)
    assert just_before.status == "active"
    at_end = customer.entitlement(utc(2026, 2, 1), CAT)
    assert (at_end.status, at_end.reason, at_end.edition, at_end.valid_until) == (
        "expired",
        "plan_ended",
        "free",
        None,
    )


def test_l4_suspended_license_unlocks_free_only() -> None:
    customer = one_plan()
    customer.suspended = True
    entitlement = customer.entitlement(JAN_10, CAT)
    assert (entitlement.status, entitlement.reason, entitlement.edition) == (
        "suspended",
        "license_suspended",
        "free",
    )
    assert entitlement.support is False


def test_l4_unknown_appliance_is_not_registered() -> None:
    entitlement = one_plan().appliance_entitlement("xoa-unknown", JAN_10, CAT)
    assert (entitlement.status, entitlement.reason, entitlement.edition) == (
        "not_registered",
        "appliance_not_registered",
        "free",
    )


def test_l4_registered_appliance_gets_the_customer_entitlement() -> None:
    customer = one_plan("premium")
    customer.register(appliance_id="xoa-1", secret="s1", move=False, now=JAN_10, catalogue=CAT)
    entitlement = customer.appliance_entitlement("xoa-1", JAN_10, CAT)
    assert (entitlement.status, entitlement.edition) == ("active", "premium")


def test_l7_support_only_while_active() -> None:
    customer = one_plan()
    assert customer.entitlement(JAN_10, CAT).support is True
    assert customer.entitlement(utc(2026, 2, 2), CAT).support is False


def test_l7_status_view_reports_support_and_no_secret() -> None:
    customer = one_plan("starter")
    customer.register(appliance_id="xoa-1", secret="s1", move=False, now=JAN_10, catalogue=CAT)
    view = customer.status_view(JAN_10, CAT)
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


# --- L5: one appliance per plan ---------------------------------------------------------


def test_l5_register_attaches_the_appliance_to_the_plan() -> None:
    customer = one_plan()
    customer.register(appliance_id="xoa-1", secret="s1", move=False, now=JAN_10, catalogue=CAT)
    assert {a: p.order_id for a, p in customer.allocation(JAN_10, CAT).items()} == {"xoa-1": "ol_a"}
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
            appliance_id="xoa-1", secret="s1", move=False, now=utc(2026, 3, 1), catalogue=CAT
        )
    assert refused.value.code == ErrorCode.NO_ACTIVE_PLAN
    assert customer.appliances == []


def test_l5_second_appliance_on_one_plan_is_refused_with_plan_in_use() -> None:
    customer = one_plan()
    customer.register(appliance_id="xoa-1", secret="s1", move=False, now=JAN_10, catalogue=CAT)
    with pytest.raises(Refused) as refused:
        customer.register(appliance_id="xoa-2", secret="s2", move=False, now=JAN_10, catalogue=CAT)
    assert refused.value.code == ErrorCode.PLAN_IN_USE
    assert [a.appliance_id for a in customer.appliances] == ["xoa-1"]
    assert customer.appliance_entitlement("xoa-2", JAN_10, CAT).status == "not_registered"


def test_l5_move_releases_the_previous_appliance() -> None:
    customer = one_plan("premium")
    customer.register(appliance_id="xoa-1", secret="s1", move=False, now=JAN_10, catalogue=CAT)
    later = JAN_10 + timedelta(days=1)
    customer.register(appliance_id="xoa-2", secret="s2", move=True, now=later, catalogue=CAT)
    assert {a: p.order_id for a, p in customer.allocation(later, CAT).items()} == {"xoa-2": "ol_a"}
    statuses = {a.appliance_id: a.status for a in customer.appliances}
    assert statuses == {"xoa-1": "moved", "xoa-2": "active"}
    old = customer.appliance_entitlement("xoa-1", later, CAT)
    assert (old.status, old.reason, old.edition) == (
        "moved",
        "license_moved_to_another_appliance",
        "free",
    )
    assert old.support is False
    new = customer.appliance_entitlement("xoa-2", later, CAT)
    assert (new.status, new.edition) == ("active", "premium")
    moved = [e for e in customer.recorded() if isinstance(e, ApplianceMoved)]
    assert len(moved) == 1
    assert (moved[0].from_appliance_id, moved[0].to_appliance_id) == ("xoa-1", "xoa-2")
    assert moved[0].order_id == "ol_a"
    assert moved[0].correlation_id == "ol_a"
    assert moved[0].occurred_at == later


def test_l5_reregistering_the_same_appliance_rotates_its_secret() -> None:
    customer = one_plan()
    customer.register(appliance_id="xoa-1", secret="s1", move=False, now=JAN_10, catalogue=CAT)
    events_before = len(customer.recorded())
    customer.register(appliance_id="xoa-1", secret="s2", move=False, now=JAN_10, catalogue=CAT)
    assert customer.secret_matches("xoa-1", "s2") is True
    assert customer.secret_matches("xoa-1", "s1") is False
    assert len(customer.appliances) == 1
    assert len(customer.recorded()) == events_before


def test_l5_each_plan_takes_one_appliance_highest_first() -> None:
    customer = customer_with(
        ("ol_s", "starter", utc(2026, 1, 1), utc(2026, 2, 1)),
        ("ol_p", "premium", utc(2026, 1, 1), utc(2026, 2, 1)),
    )
    customer.register(appliance_id="xoa-1", secret="s1", move=False, now=JAN_10, catalogue=CAT)
    customer.register(appliance_id="xoa-2", secret="s2", move=False, now=JAN_10, catalogue=CAT)
    assert {a: p.order_id for a, p in customer.allocation(JAN_10, CAT).items()} == {
        "xoa-1": "ol_p",
        "xoa-2": "ol_s",
    }
    with pytest.raises(Refused) as refused:
        customer.register(appliance_id="xoa-3", secret="s3", move=False, now=JAN_10, catalogue=CAT)
    assert refused.value.code == ErrorCode.PLAN_IN_USE


def test_l5_one_plan_never_unlocks_two_appliances_after_a_renewal() -> None:
    customer = customer_with(
        ("ol_jan", "starter", utc(2026, 1, 1), utc(2026, 2, 1)),
        ("ol_feb", "starter", utc(2026, 2, 1), utc(2026, 3, 1)),
    )
    customer.register(appliance_id="xoa-1", secret="s1", move=False, now=JAN_10, catalogue=CAT)
    feb_10 = utc(2026, 2, 10)
    with contextlib.suppress(Refused):  # refusing the second appliance is acceptable too
        customer.register(appliance_id="xoa-2", secret="s2", move=False, now=feb_10, catalogue=CAT)
    active = [
        appliance_id
        for appliance_id in ("xoa-1", "xoa-2")
        if customer.appliance_entitlement(appliance_id, feb_10, CAT).status == "active"
    ]
    assert len(active) == 1


# --- Appliance secrets ------------------------------------------------------------------


def test_l4_secret_matches_only_the_right_secret_of_a_known_appliance() -> None:
    customer = one_plan()
    customer.register(appliance_id="xoa-1", secret="s1", move=False, now=JAN_10, catalogue=CAT)
    assert customer.secret_matches("xoa-1", "s1") is True
    assert customer.secret_matches("xoa-1", "s2") is False
    assert customer.secret_matches("xoa-2", "s1") is False
    assert customer.secret_matches("xoa-2", "xo-reseller: no such customer") is False
    assert all(a.secret_hash != "s1" for a in customer.appliances)
