"""Amounts have bounds (issue: hardened edges).

Before: ``10**30`` minor units in a message passed validation, then overflowed where the
store writes 64-bit integers (``OverflowError``): taken as transient, redelivered up to the
delivery limit, then dead-lettered without a reason. Now it is refused where it is read,
dead-lettered with the field and the bound, and the consumer goes on.
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.basics.money import MAX_AMOUNT, Money
from tests.support.system import System

pytestmark = pytest.mark.integration


def reserve(order_id: str, amount: int) -> dict[str, object]:
    return {
        "reseller_id": "r-huge",
        "order_id": order_id,
        "space": "reseller",
        "wanted": {"amount": amount, "currency": "EUR"},
        "use_credit": True,
        "first_sale_requested": False,
    }


def test_m2_money_is_bounded() -> None:
    assert Money(amount=MAX_AMOUNT).amount == 10**12  # ten billion euros
    with pytest.raises(ValidationError):
        Money(amount=MAX_AMOUNT + 1)


async def test_an_amount_out_of_bounds_is_dead_lettered_with_its_reason(system: System) -> None:
    # credit.reserve is orders' to send: published as orders, as a bug in it would.
    huge = await system.client.request(
        "credit.reserve", reserve("ol_huge", 10**30), as_role="orders"
    )
    assert huge["ok"] is False and huge["error"]["code"] == "invalid_message"
    reason = "wanted.amount: Input should be less than or equal to 1000000000000"
    assert reason in huge["error"]["message"]
    [dead] = await system.client.dead_letters(wait_for=1)
    headers = dead.headers or {}
    assert reason in str(headers["x-death-reason"])
    assert headers["x-original-routing-key"] == "credit.reserve"
    assert headers.get("x-delivery-count", 0) == 0  # refused at once, never redelivered

    fine = await system.client.ok("credit.reserve", reserve("ol_fine", 1000), as_role="orders")
    assert fine["order_id"] == "ol_fine"  # the consumer went on
