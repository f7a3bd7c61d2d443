"""A licence's life (L1, L2, L6, L8) through AMQP and HTTP, on the real broker and store.

Only the licensing service runs; plan events are published as orders publishes them.
Time is the system's fixed clock, moved by hand; the expiry job's pass is called
directly (its background loop waits an hour between passes here), so no test sleeps.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.basics.money import Money
from shared.contracts.orders import PlanSuperseded, PlanUpgraded
from shared.runtime.settings import Settings
from testkit.broker import BrokerSession
from tests.support.licensing import (
    ApplianceClient,
    bind,
    events,
    publish,
    run_checks,
    until_applied,
)
from tests.support.system import System, make_settings, running_system

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)


@pytest.fixture
def settings(broker: BrokerSession, mongo_url: str, tmp_path: Path) -> Settings:
    return make_settings(
        broker=broker,
        mongo_url=mongo_url,
        data_dir=tmp_path / "data",
        job_interval_seconds=3600,
    )


@pytest.fixture
async def system(settings: Settings) -> AsyncIterator[System]:
    async with running_system(settings, services=("licensing",), start=T0) as running:
        yield running


def days_left(days: int) -> Callable[[dict[str, Any]], bool]:
    return lambda body: bool(body["days_left"] == days)


def move_clock_to(system: System, moment: datetime) -> None:
    system.clock.advance(moment - system.clock.now())


async def registered(system: System, email: str, token: str, appliance_id: str) -> ApplianceClient:
    appliance = ApplianceClient(system, appliance_id)
    response = await appliance.register(email, token)
    assert response.status_code == 200, response.text
    return appliance


# --- L6: warnings, expiry, grace, free ------------------------------------------------------


async def test_l6_warnings_expiry_grace_then_free_as_the_appliance_sees_them(
    system: System,
) -> None:
    email = "expiring@example.com"
    order_id, token = await bind(system, email, "enterprise", start=T0, days=60)
    appliance = await registered(system, email, token, "xoa-exp")
    end = T0 + 60 * DAY

    for days in (30, 7, 1):
        move_clock_to(system, end - days * DAY - timedelta(milliseconds=1))
        assert await run_checks(system) == 0  # nothing due a millisecond early
        move_clock_to(system, end - days * DAY)
        assert await run_checks(system) == 1
        assert await run_checks(system) == 0  # once each
        warning = await system.client.wait_event("license.expiring", days_left(days))
        assert (warning["order_id"], warning["edition"]) == (order_id, "enterprise")
        assert (await appliance.check())["status"] == "active"

    move_clock_to(system, end)
    assert await run_checks(system) == 1
    expired = await system.client.wait_event("license.expired")
    assert (expired["order_id"], expired["edition"]) == (order_id, "enterprise")
    in_grace = await appliance.check()
    assert (in_grace["status"], in_grace["reason"], in_grace["edition"], in_grace["support"]) == (
        "grace",
        "grace_period",
        "enterprise",
        False,
    )
    assert in_grace["claims"].status == "grace"
    assert in_grace["claims"].valid_until == end + 7 * DAY

    move_clock_to(system, end + 7 * DAY - timedelta(milliseconds=1))
    assert (await appliance.check())["edition"] == "enterprise"
    move_clock_to(system, end + 7 * DAY)
    after = await appliance.check()
    assert (after["status"], after["reason"], after["edition"], after["license"] is not None) == (
        "expired",
        "plan_ended",
        "free",
        True,
    )
    assert after["claims"].edition == "free"
    assert await run_checks(system) == 1
    changed = await system.client.wait_event("license.changed", lambda b: b["edition"] == "free")
    assert changed["previous_edition"] == "enterprise"
    assert len(events(system, "license.expiring")) == 3
    assert len(events(system, "license.expired")) == 1
    notes = events(system, "customer.notification", kind="license_expiring")
    assert [n["days_left"] for n in notes] == [30, 7, 1]


async def test_l6_warnings_are_not_sent_again_after_a_restart(settings: Settings) -> None:
    email = "restart@example.com"
    end = T0 + 40 * DAY
    async with running_system(settings, services=("licensing",), start=T0) as first:
        await bind(first, email, start=T0, days=40)
        move_clock_to(first, end - 30 * DAY)
        assert await run_checks(first) == 1
        await first.client.wait_event("license.expiring")
    async with running_system(settings, services=("licensing",), start=end - 30 * DAY) as second:
        assert await run_checks(second) == 0
        move_clock_to(second, end - 7 * DAY)
        assert await run_checks(second) == 1
        await second.client.wait_event("license.expiring", lambda b: b["days_left"] == 7)
        assert [e["days_left"] for e in events(second, "license.expiring")] == [7]


# --- L1: several plans, upgrades ----------------------------------------------------------------


async def test_l1_highest_edition_among_several_plans_then_the_next_when_it_ends(
    system: System,
) -> None:
    email = "many@example.com"
    _, token = await bind(system, email, "starter", start=T0, days=90)
    await bind(system, email, "premium", start=T0, days=30)
    enterprise, _ = await bind(system, email, "enterprise", start=T0, days=60)
    appliance = await registered(system, email, token, "xoa-many")
    assert ((await appliance.check())["edition"]) == "premium"

    move_clock_to(system, T0 + 30 * DAY)
    await run_checks(system)
    checked = await appliance.check()
    assert (checked["status"], checked["edition"]) == ("active", "enterprise")
    changed = await system.client.wait_event(
        "license.changed", lambda b: b["previous_edition"] == "premium"
    )
    assert (changed["edition"], changed["reason"]) == ("enterprise", "plan_ended")
    status = await system.client.ok("license.status", {"customer_email": email})
    assert (status["edition"], status["status"], status["support"]) == (
        "enterprise",
        "active",
        True,
    )
    states = {p["edition"]: p["state"] for p in status["plans"]}
    assert states == {"starter": "active", "premium": "grace", "enterprise": "active"}
    assert [(a["appliance_id"], a["edition"]) for a in status["appliances"]] == [
        ("xoa-many", "enterprise")
    ]
    assert [p["order_id"] for p in status["plans"] if p.get("appliance_id")] == [enterprise]


@pytest.mark.parametrize("superseded_first", [True, False])
async def test_l1_upgrade_reaches_the_registered_appliance_without_registering_again(
    system: System, superseded_first: bool
) -> None:
    email = "upgrade@example.com"
    old, token = await bind(system, email, "starter", start=T0, days=365)
    appliance = await registered(system, email, token, "xoa-up")
    move_clock_to(system, T0 + 10 * DAY)
    now = system.clock.now()
    new = "ol_upgrade_1"
    upgraded = PlanUpgraded(
        order_id=new,
        reseller_id="r-1",
        previous_order_id=old,
        customer_email=email,
        edition="premium",
        billing="annual",
        period_start=now,
        period_end=now + 365 * DAY,
        credit_note=Money(amount=1234, currency="EUR"),
        occurred_at=now,
        correlation_id=new,
    )
    superseded = PlanSuperseded(
        order_id=old,
        reseller_id="r-1",
        superseded_by=new,
        customer_email=email,
        occurred_at=now,
        correlation_id=old,
    )
    first, then = (superseded, upgraded) if superseded_first else (upgraded, superseded)
    await until_applied(system, await publish(system, first))
    if superseded_first:  # alone, it ends nothing: the successor is not known yet
        assert (await appliance.check())["edition"] == "starter"
    await until_applied(system, await publish(system, then))
    changed = await system.client.wait_event("license.changed", lambda b: b["edition"] == "premium")
    assert (changed["previous_edition"], changed["order_id"]) == ("starter", new)
    status = await system.client.ok("license.status", {"customer_email": email})
    assert [(p["order_id"], p["state"]) for p in status["plans"]] == [
        (old, "superseded"),
        (new, "active"),
    ]
    checked = await appliance.check()
    assert (checked["status"], checked["edition"], checked["claims"].order_id) == (
        "active",
        "premium",
        new,
    )
    assert all(e["edition"] != "free" for e in events(system, "license.changed"))


async def test_l1_a_redelivered_plan_bound_unlocks_once(system: System) -> None:
    order_id, _ = await bind(system, "twice@example.com", order_id="ol_twice", start=T0)
    await bind(system, "twice@example.com", order_id="ol_twice", start=T0)
    status = await system.client.ok("license.status", {"customer_email": "twice@example.com"})
    assert [p["order_id"] for p in status["plans"]] == [order_id]


# --- L8: suspension --------------------------------------------------------------------------


async def test_l8_suspension_and_reinstatement_by_operations(system: System) -> None:
    email = "suspect@example.com"
    _, token = await bind(system, email, "premium", start=T0, days=30)
    appliance = await registered(system, email, token, "xoa-sus")

    reply = await system.client.ok("license.suspend", {"customer_email": email, "reason": "fraud"})
    assert reply == {"customer_email": email, "status": "suspended"}
    event = await system.client.wait_event("license.suspended")
    assert (event["customer_email"], event["reason"]) == (email, "fraud")
    checked = await appliance.check()
    assert (checked["status"], checked["reason"], checked["edition"], checked["support"]) == (
        "suspended",
        "license_suspended",
        "free",
        False,
    )
    assert checked["claims"].status == "suspended"
    newcomer = await ApplianceClient(system, "xoa-new").register(email, token, move=True)
    assert (newcomer.status_code, newcomer.json()["error"]["code"]) == (403, "license_suspended")
    status = await system.client.ok("license.status", {"customer_email": email})
    assert (status["status"], status["suspension_reason"], status["support"]) == (
        "suspended",
        "fraud",
        False,
    )

    reply = await system.client.ok("license.reinstate", {"customer_email": email, "reason": "ok"})
    assert reply["status"] == "active"
    await system.client.wait_event("license.reinstated")
    assert ((await appliance.check())["edition"]) == "premium"


async def test_l8_suspending_an_unknown_customer_is_refused(system: System) -> None:
    reply = await system.client.request(
        "license.suspend", {"customer_email": "nobody@example.com", "reason": "x"}
    )
    assert reply["ok"] is False
    assert reply["error"]["code"] == "unknown_customer"


# --- L2: registration tokens re-issued by operations ----------------------------------------


async def test_l2_a_reissued_token_reaches_the_mailer_and_the_old_one_stops_working(
    system: System,
) -> None:
    email = "lost@example.com"
    _, old_token = await bind(system, email, "starter", start=T0)
    result = await system.client.ok(
        "registration.reissue", {"customer_email": email, "reason": "customer lost the mail"}
    )
    assert (result["customer_email"], result["tokens_revoked"]) == (email, 1)
    note = await system.client.wait_event(
        "customer.notification", lambda b: b["kind"] == "registration_token_reissued"
    )
    assert (note["customer_email"], note["edition"]) == (email, "starter")
    new_token = note["registration_token"]
    assert len(new_token) >= 32 and new_token != old_token
    refused = await ApplianceClient(system, "xoa-old").register(email, old_token)
    assert refused.status_code == 401
    assert (await ApplianceClient(system, "xoa-new").register(email, new_token)).status_code == 200
    unknown = await system.client.request(
        "registration.reissue", {"customer_email": "ghost@example.com", "reason": "x"}
    )
    assert unknown["error"]["code"] == "unknown_customer"
