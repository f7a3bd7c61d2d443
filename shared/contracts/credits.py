"""Credit messages (C1-C6): the partner balance, its ledger, reservations."""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, Field

from shared.basics.money import Money
from shared.contracts.base import Command, Event, Query, Space

LotSource = Literal["first_sale", "upgrade_excess"]
EntryKind = Literal["grant", "reserve", "release", "consume", "expire"]


class LotView(BaseModel):
    lot_id: str
    amount: Money
    remaining: Money
    granted_at: AwareDatetime
    expires_at: AwareDatetime
    source: LotSource
    order_id: str = Field(description="The order whose payment granted the lot.")


class BalanceResult(BaseModel):
    reseller_id: str
    available: Money = Field(description="Credit that can be reserved now (unexpired lots).")
    reserved: Money = Field(description="Credit held by unpaid orders.")
    lots: list[LotView]
    first_sale_available: bool = Field(
        description="Q4/C1: the reseller's next reseller-space order is priced as its first sale."
    )


class GetBalance(Query):
    """``credits.balance``: available and reserved credit, lot by lot (C2)."""

    ROUTING_KEY = "credits.balance"
    RESULT = BalanceResult

    reseller_id: str = Field(min_length=1, max_length=128)


class LedgerEntryView(BaseModel):
    entry_id: str
    kind: EntryKind
    lot_id: str
    amount: Money
    at: AwareDatetime
    order_id: str | None
    cause: str = Field(description="The message id or job that caused the entry.")


class StatementResult(BaseModel):
    reseller_id: str
    entries: list[LedgerEntryView]
    balance: BalanceResult
    reconciled: bool = Field(description="C3: the balance equals what the entries sum to.")


class GetStatement(Query):
    """``credits.statement``: every ledger entry, oldest first, and the reconciliation (C3)."""

    ROUTING_KEY = "credits.statement"
    RESULT = StatementResult

    reseller_id: str = Field(min_length=1, max_length=128)


class ReservationResult(BaseModel):
    order_id: str
    first_sale: bool = Field(description="This order holds the reseller's first-sale pricing.")
    reserved: Money


class ReserveCredit(Command):
    """``credit.reserve`` (internal, orders -> credits, request/reply) at order placement (O2).

    Atomically, on the reseller's account: claims first-sale pricing for this order if
    it asks for it and nobody holds it (C1, Q4); otherwise reserves balance credit up
    to ``wanted`` when ``use_credit`` (C4-C6). Idempotent per ``order_id``.
    """

    ROUTING_KEY = "credit.reserve"
    RESULT = ReservationResult

    reseller_id: str = Field(min_length=1, max_length=128)
    order_id: str = Field(min_length=1)
    space: Space
    wanted: Money = Field(description="The amount due after the standard discount.")
    use_credit: bool
    first_sale_requested: bool


class _CreditEvent(Event):
    reseller_id: str
    amount: Money


class CreditGranted(_CreditEvent):
    ROUTING_KEY = "credit.granted"
    lot_id: str
    expires_at: AwareDatetime
    source: LotSource
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
