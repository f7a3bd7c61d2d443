"""Credit messages (C1-C6): the partner balance and its ledger."""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, Field

from shared.contracts.base import Event, Query
from shared.money import Money


class LotView(BaseModel):
    lot_id: str
    amount: Money
    remaining: Money
    granted_at: AwareDatetime
    expires_at: AwareDatetime
    source: Literal["first_sale", "upgrade_excess"]


class BalanceResult(BaseModel):
    reseller_id: str
    available: Money
    reserved: Money
    lots: list[LotView]


class GetBalance(Query):
    """``credits.balance``: available and reserved credit, lot by lot (C2)."""

    ROUTING_KEY = "credits.balance"
    RESULT = BalanceResult

    reseller_id: str = Field(min_length=1, max_length=128)


class _CreditEvent(Event):
    reseller_id: str
    amount: Money


class CreditGranted(_CreditEvent):
    ROUTING_KEY = "credit.granted"
    lot_id: str
    expires_at: AwareDatetime
    source: Literal["first_sale", "upgrade_excess"]
    order_id: str


class CreditReserved(_CreditEvent):
    ROUTING_KEY = "credit.reserved"
    order_id: str


class CreditReleased(_CreditEvent):
    ROUTING_KEY = "credit.released"
    order_id: str


class CreditConsumed(_CreditEvent):
    ROUTING_KEY = "credit.consumed"
    order_id: str


class CreditExpired(_CreditEvent):
    ROUTING_KEY = "credit.expired"
    lot_id: str
