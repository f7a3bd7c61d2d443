"""Partner credits on the real broker and store (issue 3): the first-sale credit, exact
ledger, credit on a later sale, the 50-way race, expiry, upgrades pro rata."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from shared.basics.clock import add_months
from shared.runtime import metrics
from shared.runtime.service import Runtime
from shared.runtime.settings import Settings
from tests.support.flows import bound_order, paid_order, place, quote, upload
from tests.support.system import WIRES, System, running_system

pytestmark = pytest.mark.integration


def eur(amount: int) -> dict[str, Any]:
    return {"amount": amount, "currency": "EUR"}


async def balance(system: System, reseller: str) -> dict[str, Any]:
    return await system.client.ok("credits.balance", {"reseller_id": reseller})


async def statement(system: System, reseller: str) -> dict[str, Any]:
    return await system.client.ok("credits.statement", {"reseller_id": reseller})


async def first_sale(system: System, reseller: str, **fields: Any) -> str:
    """A first reseller-space sale, paid; returns its order id once the credit is granted."""
    order_id = await paid_order(system, reseller, **fields)
    await system.client.wait_event("credit.granted", lambda b: b["order_id"] == order_id)
    return order_id


async def test_c1_first_sale_credit_granted_once_under_duplicated_delivery(system: System) -> None:
    q = await quote(system, "r-c1", "enterprise", "annual")
    assert (q["first_sale"], q["amount_due"], q["first_sale_credit"]) == (
        True,
        eur(199900),
        eur(39980),
    )
    order_id = await first_sale(system, "r-c1", quote_number=q["quote_number"])
    accepted = await system.client.wait_event("proof.accepted", lambda b: b["order_id"] == order_id)
    original_id = accepted.pop("_message_id")
    # the broker redelivers it, and another system publishes a copy with a new id
    await system.client.publish_event(
        "proof.accepted", accepted, message_id=original_id, as_role="orders"
    )
    await system.client.publish_event(
        "proof.accepted", accepted, message_id="copy-1", as_role="orders"
    )
    await system.client.ok("order.list", {"reseller_id": "r-c1"})  # let the copies be handled
    await asyncio.sleep(0.5)
    b = await balance(system, "r-c1")
    [lot] = b["lots"]
    assert (lot["amount"], lot["remaining"], lot["source"]) == (
        eur(39980),
        eur(39980),
        "first_sale",
    )
    granted_at = datetime.fromisoformat(lot["granted_at"])
    assert datetime.fromisoformat(lot["expires_at"]) == add_months(granted_at, 12)
    assert b["first_sale_available"] is False
    assert len([k for k, body, _ in system.client.events if k == "credit.granted"]) == 1
    second = await quote(system, "r-c1", "starter", "monthly")
    assert second["first_sale"] is False


async def test_an_event_id_reused_for_another_payment_is_dead_lettered_and_changes_nothing(
    system: System,
) -> None:
    """Credits' events skip the inbox (``Route(inbox=False)``): the account keeps each
    event's id with its digest. A resend under that id changes nothing; another
    ``proof.accepted`` under it (another reviewer) is refused with ``idempotency_key_reused``
    and dead-lettered, the account as it was; nothing is claimed in credits' inbox."""
    order_id = await first_sale(system, "r-reuse")
    accepted = await system.client.wait_event("proof.accepted", lambda b: b["order_id"] == order_id)
    original_id = accepted.pop("_message_id")
    [sent] = [m.body for k, _, m in system.client.events if m.message_id == original_id]
    before = await statement(system, "r-reuse")
    await system.client.publish_event(
        "proof.accepted", sent, message_id=original_id, as_role="orders"
    )
    other = {**accepted, "reviewer": f"not-{accepted['reviewer']}"}
    await system.client.publish_event(
        "proof.accepted", other, message_id=original_id, as_role="orders"
    )

    [dead] = await system.client.dead_letters()
    assert dead.message_id == original_id
    assert json.loads(dead.body)["reviewer"] == other["reviewer"]
    reason = str((dead.headers or {})["x-death-reason"])
    assert reason.startswith(f"idempotency_key_reused: message_id {original_id} was already"), (
        reason
    )
    assert await system.client.dead_letters(timeout=0.5) == []  # the resend was fine
    assert await statement(system, "r-reuse") == before
    inbox = system.runtimes["credits"].inbox.collection
    assert await inbox.count_documents({"_id": {"$regex": original_id}}) == 0


async def test_c1_personal_space_sales_never_count(system: System) -> None:
    await paid_order(
        system,
        "r-pers",
        space="personal",
        edition="starter",
        billing="annual",
        reseller_email="me@r.example",
    )
    b = await balance(system, "r-pers")
    assert (b["lots"], b["first_sale_available"]) == ([], True)
    assert (await quote(system, "r-pers"))["first_sale"] is True


async def test_c4_second_sale_uses_the_credit_in_addition_to_the_discount(system: System) -> None:
    await first_sale(system, "r-c4")
    q = await quote(system, "r-c4", "premium", "annual")
    # 399,900 - 20 % = 319,920; the 39,980 credit applies on top of the discount
    assert (q["discount"], q["credit_applied"], q["amount_due"]) == (
        eur(79980),
        eur(39980),
        eur(279940),
    )
    order = await place(system, "r-c4", quote_number=q["quote_number"])
    assert (order["credit_reserved"], order["amount_due"]) == (eur(39980), eur(279940))
    held = await balance(system, "r-c4")
    assert (held["available"], held["reserved"]) == (eur(0), eur(39980))
    assert (await upload(system, order["order_id"], "r-c4")).status_code == 201
    await system.client.ok(
        "proof.review", {"order_id": order["order_id"], "decision": "accept", "reviewer": "ops"}
    )
    await system.client.wait_event("credit.consumed", lambda b: b["order_id"] == order["order_id"])
    spent = await statement(system, "r-c4")
    assert spent["reconciled"] is True
    assert [e["kind"] for e in spent["entries"]] == ["grant", "reserve", "consume"]
    assert (spent["balance"]["available"], spent["balance"]["reserved"]) == (eur(0), eur(0))
    assert all(e["cause"] for e in spent["entries"])


async def test_o2_o8_cancel_and_expiry_release_the_reservation(system: System) -> None:
    await first_sale(system, "r-o8")
    cancelled = await place(system, "r-o8", edition="enterprise", billing="annual")
    assert (cancelled["credit_reserved"], cancelled["amount_due"]) == (eur(39980), eur(119940))
    await system.client.ok(
        "order.cancel", {"reseller_id": "r-o8", "order_id": cancelled["order_id"]}
    )
    await system.client.wait_event(
        "credit.released", lambda b: b["order_id"] == cancelled["order_id"]
    )
    assert (await balance(system, "r-o8"))["available"] == eur(39980)

    expiring = await place(system, "r-o8", edition="enterprise", billing="annual")
    assert expiring["credit_reserved"] == eur(39980)
    await system.client.wait_event(
        "credit.reserved", lambda b: b["order_id"] == expiring["order_id"]
    )
    system.clock.advance(timedelta(hours=system.settings.unpaid_order_ttl_hours, seconds=1))
    assert await system.runtimes["orders"].periodic["unpaid_expiry"](system.clock.now()) == 1
    await system.client.wait_event(
        "credit.released", lambda b: b["order_id"] == expiring["order_id"]
    )
    line = await system.client.ok(
        "order.get", {"reseller_id": "r-o8", "order_id": expiring["order_id"]}
    )
    assert line["status"] == "expired"
    after = await statement(system, "r-o8")
    assert after["balance"]["available"] == eur(39980)
    assert after["reconciled"] is True


async def test_c6_lots_expire_on_time_with_an_injected_clock(system: System) -> None:
    await first_sale(system, "r-c6")
    covered = await place(system, "r-c6", edition="starter", billing="monthly")
    # 3,920 after discount, all covered by credit: nothing due, paid at once (consumed)
    assert (covered["status"], covered["amount_due"]) == ("paid", eur(0))
    await system.client.wait_event(
        "credit.consumed", lambda b: b["order_id"] == covered["order_id"]
    )
    tick = system.runtimes["credits"].periodic["credits_due"]
    system.clock.advance(timedelta(days=364))
    await tick(system.clock.now())
    assert (await balance(system, "r-c6"))["available"] == eur(36060)  # not yet
    system.clock.advance(timedelta(days=2))
    await tick(system.clock.now())
    expired = await system.client.wait_event("credit.expired", lambda b: b["reseller_id"] == "r-c6")
    assert expired["amount"] == eur(36060)
    assert (await balance(system, "r-c6"))["available"] == eur(0)
    late = await place(system, "r-c6", edition="starter", billing="monthly")
    assert (late["credit_reserved"], late["amount_due"]) == (eur(0), eur(3920))  # C6
    assert (await statement(system, "r-c6"))["reconciled"] is True


async def test_c6_a_reservation_made_while_valid_is_honoured_after_expiry(system: System) -> None:
    await first_sale(system, "r-c6b")
    confirmed = metrics.MESSAGES.labels("credits", "order.placed", "ok")
    before = confirmed._value.get()
    held = await place(system, "r-c6b", edition="premium", billing="annual")
    assert (held["credit_reserved"], held["amount_due"]) == (eur(39980), eur(279940))
    await system.client.wait_event("credit.reserved", lambda b: b["order_id"] == held["order_id"])
    # credits must have applied this line's order.placed (the reservation is confirmed)
    # before the clock jumps, or the job rightly releases it as an orphan
    for _ in range(200):
        if confirmed._value.get() > before:
            break
        await asyncio.sleep(0.05)
    assert confirmed._value.get() > before
    system.clock.advance(timedelta(days=400))
    await system.runtimes["credits"].periodic["credits_due"](system.clock.now())
    assert (await balance(system, "r-c6b"))["reserved"] == eur(39980)  # still held
    assert (await upload(system, held["order_id"], "r-c6b")).status_code == 201
    await system.client.ok(
        "proof.review", {"order_id": held["order_id"], "decision": "accept", "reviewer": "ops"}
    )
    await system.client.wait_event("credit.consumed", lambda b: b["order_id"] == held["order_id"])
    final = await statement(system, "r-c6b")
    assert [e["kind"] for e in final["entries"]] == ["grant", "reserve", "consume"]
    assert final["reconciled"] is True


RACE_CATALOGUE = {
    "currency": "EUR",
    "reseller_discount": "0.20",
    "editions": [
        {"name": "free", "rank": 0, "prices": {}},
        {"name": "small", "rank": 1, "prices": {"monthly": 5000, "annual": 50000}},
        {"name": "big", "rank": 2, "prices": {"monthly": 20000, "annual": 200000}},
    ],
}


async def test_c5_fifty_racing_orders_reserve_exactly_what_the_balance_covers(
    settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "catalogue.json"
    path.write_text(json.dumps(RACE_CATALOGUE))
    race = settings.model_copy(update={"catalogue_path": path, "prefetch": 64})
    async with running_system(race, services=("quotes", "orders", "credits")) as system:
        await first_sale(system, "r-race", edition="big", billing="annual")  # a 40,000 lot
        assert (await balance(system, "r-race"))["available"] == eur(40000)
        # A second credits process: within one, changes of an account take turns; across
        # two, their saves race for it and the losers retry.
        replica = Runtime("credits", race, system.clock)
        await replica.start(WIRES["credits"](replica))
        conflicts_before = metrics.SAVE_CONFLICTS.labels("CreditAccount")._value.get()
        body = {
            "reseller_id": "r-race",
            "space": "reseller",
            "edition": "small",
            "billing": "monthly",
        }
        try:
            replies = await asyncio.gather(
                *[system.client.request("order.place", body) for _ in range(50)]
            )
        finally:
            await replica.stop()
        conflicts = metrics.SAVE_CONFLICTS.labels("CreditAccount")._value.get() - conflicts_before
        reserved = [r["result"]["credit_reserved"]["amount"] for r in replies if r["ok"]]
        won = [amount for amount in reserved if amount > 0]
        final = await statement(system, "r-race")
        print(
            f"\nC5 race: {len(replies)} attempts, {len(won)} reservations won "
            f"({sum(won)} cents), {conflicts:.0f} optimistic conflicts retried, final available "
            f"{final['balance']['available']['amount']} cents"
        )
        assert len(reserved) == 50
        assert won == [4000] * 10  # 5,000 - 20 % = 4,000 each: the 40,000 covers exactly 10
        assert final["balance"]["available"] == eur(0)
        reserve_entries = [
            e["amount"]["amount"] for e in final["entries"] if e["kind"] == "reserve"
        ]
        assert sum(reserve_entries) == 40000  # never more than the balance
        assert final["reconciled"] is True
        assert conflicts > 0  # the two processes really raced for the one account


def pro_rata(value: int, start: str, end: str, now: datetime) -> int:
    """The expected credit note, computed independently: half up on exact milliseconds."""
    begin, finish = datetime.fromisoformat(start), datetime.fromisoformat(end)
    remaining = (finish - now) // timedelta(milliseconds=1)
    length = (finish - begin) // timedelta(milliseconds=1)
    exact = Fraction(remaining * value, length)
    return int(exact) + (1 if exact - int(exact) >= Fraction(1, 2) else 0)


async def test_o7_upgrade_credit_note_is_pro_rata_and_consecutive_upgrades_stay_exact(
    system: System,
) -> None:
    base = await bound_order(system, "r-o7", "cust@o7.example", edition="starter", billing="annual")
    line = await system.client.ok("order.get", {"reseller_id": "r-o7", "order_id": base})
    assert line["price"]["first_sale"] is True
    system.clock.advance(timedelta(days=73, hours=5))
    up = await system.client.ok(
        "plan.upgrade",
        {"reseller_id": "r-o7", "order_id": base, "edition": "enterprise", "use_credit": False},
    )
    # value of the starter plan: 49,900 paid less the 9,980 credited back = 39,920
    expected = pro_rata(39920, line["period_start"], line["period_end"], system.clock.now())
    assert up["credit_note"] == eur(expected)
    assert up["credit_note_applied"] == eur(expected)  # under the 159,920 due: all applied
    assert up["amount_due"] == eur(159920 - expected)
    refused = await system.client.request(
        "plan.upgrade", {"reseller_id": "r-o7", "order_id": base, "edition": "premium"}
    )
    assert refused["error"]["code"] == "upgrade_in_progress"
    assert (await upload(system, up["order_id"], "r-o7")).status_code == 201
    await system.client.ok(
        "proof.review", {"order_id": up["order_id"], "decision": "accept", "reviewer": "ops"}
    )
    upgraded = await system.client.wait_event(
        "plan.upgraded", lambda b: b["order_id"] == up["order_id"]
    )
    assert (upgraded["previous_order_id"], upgraded["edition"]) == (base, "enterprise")
    await system.client.wait_event("plan.superseded", lambda b: b["order_id"] == base)
    old = await system.client.ok("order.get", {"reseller_id": "r-o7", "order_id": base})
    assert (old["status"], old["superseded_by"]) == ("superseded", up["order_id"])

    # a second upgrade values the enterprise plan by what it really cost: 199,900 - 20 %
    mid = await system.client.ok("order.get", {"reseller_id": "r-o7", "order_id": up["order_id"]})
    system.clock.advance(timedelta(days=200))
    again = await system.client.ok(
        "plan.upgrade",
        {
            "reseller_id": "r-o7",
            "order_id": up["order_id"],
            "edition": "premium",
            "use_credit": False,
        },
    )
    expected = pro_rata(159920, mid["period_start"], mid["period_end"], system.clock.now())
    assert again["credit_note"] == eur(expected)
    assert again["amount_due"] == eur(319920 - expected)


async def test_o7_credit_note_above_the_amount_due_sends_the_excess_to_the_balance(
    system: System,
) -> None:
    base = await bound_order(
        system, "r-cap", "cust@cap.example", edition="enterprise", billing="annual"
    )
    line = await system.client.ok("order.get", {"reseller_id": "r-cap", "order_id": base})
    system.clock.advance(timedelta(days=10))
    up = await system.client.ok(
        "plan.upgrade",
        {
            "reseller_id": "r-cap",
            "order_id": base,
            "edition": "premium",
            "billing": "monthly",
            "use_credit": False,
        },
    )
    note = pro_rata(159920, line["period_start"], line["period_end"], system.clock.now())
    assert up["credit_note"] == eur(note)
    assert up["credit_note_applied"] == eur(31920)  # capped at 39,900 - 20 %
    assert up["credit_note_to_balance"] == eur(note - 31920)
    assert up["amount_due"] == eur(0)
    # nothing left to pay: the line is paid at once, the excess becomes a 12-month lot
    granted = await system.client.wait_event(
        "credit.granted", lambda b: b["order_id"] == up["order_id"]
    )
    assert (granted["amount"], granted["source"]) == (eur(note - 31920), "upgrade_excess")
    assert datetime.fromisoformat(granted["expires_at"]) == add_months(system.clock.now(), 12)
    await system.client.wait_event("plan.superseded", lambda b: b["order_id"] == base)
    lots = {lot["source"]: lot["amount"] for lot in (await balance(system, "r-cap"))["lots"]}
    assert lots == {"first_sale": eur(39980), "upgrade_excess": eur(note - 31920)}


async def test_o7_refusals_are_precise(system: System) -> None:
    unpaid = (await place(system, "r-ref"))["order_id"]
    bound = await bound_order(
        system, "r-ref", "c@ref.example", edition="enterprise", billing="monthly"
    )
    cases = [
        ({"order_id": unpaid, "edition": "premium"}, "order_not_bound"),
        ({"order_id": bound, "edition": "starter"}, "not_an_upgrade"),
        ({"order_id": bound, "edition": "enterprise"}, "not_an_upgrade"),
        ({"order_id": bound, "edition": "platinum"}, "unknown_edition"),
        ({"order_id": "ol_nope", "edition": "premium"}, "unknown_order"),
    ]
    for body, code in cases:
        reply = await system.client.request("plan.upgrade", {"reseller_id": "r-ref", **body})
        assert reply["error"]["code"] == code, (body, reply)
    foreign = await system.client.request(
        "plan.upgrade", {"reseller_id": "r-other", "order_id": bound, "edition": "premium"}
    )
    assert foreign["error"]["code"] == "not_your_order"
    system.clock.advance(timedelta(days=32))
    ended = await system.client.request(
        "plan.upgrade", {"reseller_id": "r-ref", "order_id": bound, "edition": "premium"}
    )
    assert ended["error"]["code"] == "plan_expired"
