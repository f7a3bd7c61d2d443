"""Credit rules (C1-C6): the ``CreditAccount`` of one reseller. No I/O.

The account keeps its lots and an append-only ledger; the balance is derived from
the ledger (C3), never stored beside it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel

from shared.contracts.credits import BalanceResult, LotView
from shared.money import Money
from shared.store import Aggregate

EntryKind = Literal["grant", "reserve", "release", "consume", "expire"]
LotSource = Literal["first_sale", "upgrade_excess"]


class LedgerEntry(BaseModel):
    """One immutable movement on one lot; ``amount`` is positive, its sign comes from ``kind``."""

    entry_id: str
    kind: EntryKind
    lot_id: str
    amount: int
    at: AwareDatetime
    order_id: str | None = None
    cause: str = ""  # the message or job that caused it


class CreditLot(BaseModel):
    lot_id: str
    amount: int
    granted_at: AwareDatetime
    expires_at: AwareDatetime
    source: LotSource


class CreditAccount(Aggregate):
    """A reseller's balance: lots, and the ledger they are derived from."""

    currency: str = "EUR"
    lots: list[CreditLot] = []
    entries: list[LedgerEntry] = []

    def remaining(self, lot_id: str) -> int:
        """What is left on a lot, from the ledger (C3): grant - reserve + release - expire."""
        total = 0
        for entry in self.entries:
            if entry.lot_id != lot_id:
                continue
            if entry.kind in ("grant", "release"):
                total += entry.amount
            elif entry.kind in ("reserve", "expire"):
                total -= entry.amount
        return total

    def reserved(self) -> int:
        """Credit held by unpaid orders: reserved, not yet released nor consumed."""
        total = 0
        for entry in self.entries:
            if entry.kind == "reserve":
                total += entry.amount
            elif entry.kind in ("release", "consume"):
                total -= entry.amount
        return total

    def available(self, now: datetime) -> int:
        return sum(self.remaining(lot.lot_id) for lot in self.lots if lot.expires_at > now)

    def balance(self, now: datetime) -> BalanceResult:
        """C2: available and reserved credit, lot by lot, with expiry dates."""

        def money(amount: int) -> Money:
            return Money(amount=amount, currency=self.currency)

        return BalanceResult(
            reseller_id=self.id,
            available=money(self.available(now)),
            reserved=money(self.reserved()),
            lots=[
                LotView(
                    lot_id=lot.lot_id,
                    amount=money(lot.amount),
                    remaining=money(self.remaining(lot.lot_id)),
                    granted_at=lot.granted_at,
                    expires_at=lot.expires_at,
                    source=lot.source,
                )
                for lot in self.lots
            ],
        )
