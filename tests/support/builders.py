"""Domain objects built the way the product builds them, for tests."""

from __future__ import annotations

from datetime import datetime, timedelta

from services.orders.domain import OrderLine
from shared.basics.money import Money
from shared.contracts.base import Space
from shared.contracts.credits import ReservationResult
from shared.contracts.quotes import QuoteResult


def eur(amount: int) -> Money:
    return Money(amount=amount, currency="EUR")


def quote_result(*, reseller: str = "r-1", space: Space = "reseller", now: datetime) -> QuoteResult:
    return QuoteResult(
        quote_number="Q-2026-000001",
        reseller_id=reseller,
        space=space,
        edition="enterprise",
        billing="annual",
        list_price=eur(199900),
        discount=eur(39980),
        credit_applied=eur(0),
        amount_due=eur(159920),
        first_sale=False,
        first_sale_credit=eur(0),
        issued_at=now,
        valid_until=now + timedelta(days=30),
        reseller_document=space == "reseller",
    )


def placed_line(order_id: str, *, now: datetime, reseller: str = "r-1") -> OrderLine:
    quote = quote_result(reseller=reseller, now=now)
    return OrderLine.place(
        order_id=order_id,
        quote=quote,
        reservation=ReservationResult(order_id=order_id, first_sale=False, reserved=eur(0)),
        use_credit=True,
        reseller_email=None,
        now=now,
        unpaid_ttl=timedelta(days=14),
    )
