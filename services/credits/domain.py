"""Credit rules (C1-C6, O2, O7): the ``CreditAccount`` of one reseller. No I/O.

One document per reseller holds its lots, its reservations and its append-only
ledger, so every change to money is one atomic, versioned save: two orders racing
for the same balance are serialised by the optimistic version check (C5), with no
transaction. Each lot's ``remaining`` is kept for speed and checked against the
ledger by ``reconcile`` (C3).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel

from shared.basics.clock import add_months
from shared.basics.money import Money
from shared.contracts.base import Space
from shared.contracts.credits import (
    BalanceResult,
    CreditConsumed,
    CreditExpired,
    CreditGranted,
    CreditReleased,
    CreditReserved,
    EntryKind,
    LedgerEntryView,
    LotSource,
    LotView,
    ReservationResult,
    StatementResult,
)
from shared.contracts.orders import OrderPrice
from shared.runtime.store import Aggregate

CREDIT_VALIDITY_MONTHS = 12  # C1: a lot is valid 12 months from its grant


class LedgerEntry(BaseModel):
    """One immutable movement on one lot; ``amount`` > 0, its direction comes from ``kind``."""

    entry_id: str
    kind: EntryKind
    lot_id: str
    amount: int
    at: AwareDatetime
    order_id: str | None = None
    cause: str


class CreditLot(BaseModel):
    lot_id: str
    amount: int
    remaining: int
    granted_at: AwareDatetime
    expires_at: AwareDatetime
    source: LotSource
    order_id: str

    def usable_at(self, now: datetime) -> bool:
        return self.remaining > 0 and now < self.expires_at


class Allocation(BaseModel):
    lot_id: str
    amount: int


class Reservation(BaseModel):
    """Credit held for one unpaid order (O2): consumed on payment, released otherwise."""

    order_id: str
    allocations: list[Allocation]
    status: Literal["held", "released", "consumed"] = "held"
    reserved_at: AwareDatetime
    confirmed: bool = False  # the order line exists (its order.placed was seen)
    orphaned: bool = False  # released because its line had not appeared in time

    @property
    def amount(self) -> int:
        return sum(a.amount for a in self.allocations)


class CreditAccount(Aggregate):
    """A reseller's balance; ``id`` is the reseller id.

    A reservation's life: ``reserve`` at placement, ``confirm`` when the line appears,
    then ``settle_payment`` (consumed) or ``release`` (cancelled, expired, orphaned).

    Kept whole (about 330 lines): every money decision must be one versioned save of
    this one document (C5), and the ledger, the lots and the reservations it moves are
    only right together; the views and ``reconcile`` (C3) read the same three lists.
    """

    currency: str = "EUR"
    lots: list[CreditLot] = []
    reservations: list[Reservation] = []
    entries: list[LedgerEntry] = []
    first_sale_order: str | None = None  # the order priced as the first sale (Q4)
    first_sale_granted: bool = False  # C1: once per reseller, ever
    # Top-level and indexed: when the periodic job must look at this account next.
    next_due_at: AwareDatetime | None = None

    # --- O2 / C4 / C5 / C6: reserve at placement -----------------------------------

    def reserve(
        self,
        *,
        order_id: str,
        space: Space,
        wanted: Money,
        use_credit: bool,
        first_sale_requested: bool,
        now: datetime,
        cause: str,
    ) -> ReservationResult:
        """Claim first-sale pricing or reserve balance credit for ``order_id``, once.

        - Q4/C1: a reseller-space order quoted as a first sale keeps that pricing only
          if no other order holds it and no first-sale credit was ever granted; two
          first sales placed together cannot both be priced so.
        - C4: otherwise credit covers the amount after the discount, capped at it, from
          the lots expiring first; C6: expired lots are not used.
        - C5: the whole decision is one versioned save of this account.
        """
        known = self._reservation(order_id)
        if known is not None or self.first_sale_order == order_id:
            return self.reservation_result(order_id)
        if space == "reseller" and first_sale_requested and self.first_sale_available:
            self.first_sale_order = order_id
            return self.reservation_result(order_id)
        allocations = (
            self._take(
                wanted.amount,
                [lot for lot in self.lots if lot.usable_at(now)],
                order_id=order_id,
                now=now,
                cause=cause,
            )
            if use_credit and space == "reseller"
            else []
        )
        reservation = Reservation(order_id=order_id, allocations=allocations, reserved_at=now)
        self.reservations = [*self.reservations, reservation]
        if reservation.amount:
            self._record_movement(CreditReserved, reservation, now)
        self._schedule()
        return self.reservation_result(order_id)

    def confirm(self, order_id: str, now: datetime, *, cause: str) -> int:
        """The order line exists: its reservation is no longer at risk of being orphaned.

        A reservation already released as an orphan is taken again (the line was priced
        with it); returns the shortfall when the balance no longer covers it.
        """
        reservation = self._reservation(order_id)
        shortfall = 0
        if reservation is not None:
            reservation.confirmed = True
            if reservation.status == "released" and reservation.orphaned:
                shortfall = self._revive(reservation, now, cause=cause)
        self._schedule()
        return shortfall

    def _revive(self, reservation: Reservation, now: datetime, *, cause: str) -> int:
        """Reserve again what an orphaned reservation held (its allocations, kept by the
        release), from any lot with credit left: it was made while valid (C6)."""
        reservation.orphaned = False
        held = reservation.amount
        reservation.allocations = self._take(
            held,
            [lot for lot in self.lots if lot.remaining > 0],
            order_id=reservation.order_id,
            now=now,
            cause=cause,
        )
        reservation.status = "held"
        return held - reservation.amount

    def _take(
        self, amount: int, lots: list[CreditLot], *, order_id: str, now: datetime, cause: str
    ) -> list[Allocation]:
        """Take up to ``amount`` from ``lots``, earliest expiry first (C4), one ledger
        ``reserve`` entry per lot touched."""
        allocations: list[Allocation] = []
        left = amount
        for lot in sorted(lots, key=lambda lot: (lot.expires_at, lot.granted_at, lot.lot_id)):
            take = min(left, lot.remaining)
            if take == 0:
                break
            lot.remaining -= take
            left -= take
            allocations.append(Allocation(lot_id=lot.lot_id, amount=take))
            self._enter("reserve", lot.lot_id, take, now, order_id=order_id, cause=cause)
        return allocations

    # --- O2 / O8: release when the order is cancelled or expires ------------------

    def release(self, order_id: str, *, now: datetime, cause: str) -> None:
        """Give the held credit back; a part whose lot expired meanwhile expires now (C6)."""
        if self.first_sale_order == order_id and not self.first_sale_granted:
            self.first_sale_order = None  # the next order may be the first sale again
        reservation = self._reservation(order_id)
        if reservation is None or reservation.status != "held":
            return
        reservation.status = "released"
        for allocation in reservation.allocations:
            lot = self._lot(allocation.lot_id)
            lot.remaining += allocation.amount
            self._enter(
                "release", lot.lot_id, allocation.amount, now, order_id=order_id, cause=cause
            )
        if reservation.amount:
            self._record_movement(CreditReleased, reservation, now)
        self.expire_due(now, cause=cause)

    # --- O2 / C1 / O7: payment accepted -------------------------------------------

    def settle_payment(
        self, *, order_id: str, space: Space, price: OrderPrice, now: datetime, cause: str
    ) -> None:
        """Consume the order's reservation; grant the first-sale credit (C1) and an
        upgrade's credit-note excess (O7) as lots valid 12 months."""
        self.confirm(order_id, now, cause=cause)
        reservation = self._reservation(order_id)
        if reservation is not None and reservation.status == "held":
            reservation.status = "consumed"
            for allocation in reservation.allocations:
                self._enter("consume", allocation.lot_id, allocation.amount, now, order_id, cause)
            if reservation.amount:
                self._record_movement(CreditConsumed, reservation, now)
        first_sale_paid = space == "reseller" and price.first_sale and not self.first_sale_granted
        if first_sale_paid and self.first_sale_order in (None, order_id):
            self.first_sale_order = order_id
            self.first_sale_granted = True
            self._grant(price.first_sale_credit.amount, "first_sale", order_id, now, cause)
        if price.credit_note_excess.amount > 0:
            self._grant(price.credit_note_excess.amount, "upgrade_excess", order_id, now, cause)
        self._schedule()

    def _grant(
        self, amount: int, source: LotSource, order_id: str, now: datetime, cause: str
    ) -> None:
        lot_id = f"lot_{source}_{order_id}"
        if amount <= 0 or any(lot.lot_id == lot_id for lot in self.lots):
            return  # once per order and source, whatever the redeliveries
        lot = CreditLot(
            lot_id=lot_id,
            amount=amount,
            remaining=amount,
            granted_at=now,
            expires_at=add_months(now, CREDIT_VALIDITY_MONTHS),
            source=source,
            order_id=order_id,
        )
        self.lots = [*self.lots, lot]
        self._enter("grant", lot_id, amount, now, order_id=order_id, cause=cause)
        self.record(
            CreditGranted,
            at=now,
            amount=self._money(amount),
            lot_id=lot_id,
            expires_at=lot.expires_at,
            source=source,
            order_id=order_id,
            correlation_id=order_id,
        )

    # --- C6: expiry, and orphaned reservations -------------------------------------

    def expire_due(self, now: datetime, *, cause: str) -> None:
        """Expire what is left on lots past their expiry (held reservations are honoured)."""
        for lot in self.lots:
            if lot.remaining > 0 and now >= lot.expires_at:
                amount, lot.remaining = lot.remaining, 0
                self._enter("expire", lot.lot_id, amount, now, order_id=None, cause=cause)
                self.record(CreditExpired, at=now, amount=self._money(amount), lot_id=lot.lot_id)
        self._schedule()

    def release_orphans(self, now: datetime, *, older_than: timedelta, cause: str) -> None:
        """Release reservations whose order line never appeared (the placing process died
        after reserving and its command was never retried)."""
        for reservation in self.reservations:
            if (
                reservation.status == "held"
                and not reservation.confirmed
                and reservation.reserved_at + older_than <= now
            ):
                self.release(reservation.order_id, now=now, cause=cause)
                reservation.orphaned = True
        self._schedule()

    def _schedule(self) -> None:
        """When the periodic job must look again: the first lot expiry with credit left,
        or an unconfirmed reservation (checked each pass until confirmed or released)."""
        moments = [lot.expires_at for lot in self.lots if lot.remaining > 0] + [
            r.reserved_at for r in self.reservations if r.status == "held" and not r.confirmed
        ]
        self.next_due_at = min(moments) if moments else None

    # --- C2 / C3: views and reconciliation -----------------------------------------

    @property
    def first_sale_available(self) -> bool:
        return not self.first_sale_granted and self.first_sale_order is None

    def available(self, now: datetime) -> int:
        return sum(lot.remaining for lot in self.lots if now < lot.expires_at)

    def reserved(self) -> int:
        return sum(r.amount for r in self.reservations if r.status == "held")

    def ledger_remaining(self, lot_id: str) -> int:
        """A lot's remainder from the ledger alone: grant - reserve + release - expire."""
        sign = {"grant": 1, "reserve": -1, "release": 1, "expire": -1, "consume": 0}
        return sum(sign[e.kind] * e.amount for e in self.entries if e.lot_id == lot_id)

    def ledger_reserved(self) -> int:
        """Credit held by orders, from the ledger alone: reserve - release - consume."""
        sign = {"reserve": 1, "release": -1, "consume": -1, "grant": 0, "expire": 0}
        return sum(sign[e.kind] * e.amount for e in self.entries)

    def reconcile(self) -> bool:
        """C3: every lot's remainder and the reserved total equal what the entries sum to,
        and nothing is negative."""
        return (
            all(
                lot.remaining == self.ledger_remaining(lot.lot_id)
                and 0 <= lot.remaining <= lot.amount
                for lot in self.lots
            )
            and self.reserved() == self.ledger_reserved() >= 0
            and all(e.amount > 0 for e in self.entries)
        )

    def balance(self, now: datetime) -> BalanceResult:
        return BalanceResult(
            reseller_id=self.id,
            available=self._money(self.available(now)),
            reserved=self._money(self.reserved()),
            lots=[
                LotView(
                    lot_id=lot.lot_id,
                    amount=self._money(lot.amount),
                    remaining=self._money(lot.remaining),
                    granted_at=lot.granted_at,
                    expires_at=lot.expires_at,
                    source=lot.source,
                    order_id=lot.order_id,
                )
                for lot in self.lots
            ],
            first_sale_available=self.first_sale_available,
        )

    def statement(self, now: datetime) -> StatementResult:
        return StatementResult(
            reseller_id=self.id,
            entries=[
                LedgerEntryView(**e.model_dump(exclude={"amount"}), amount=self._money(e.amount))
                for e in self.entries
            ],
            balance=self.balance(now),
            reconciled=self.reconcile(),
        )

    # --- internals -------------------------------------------------------------------

    def reservation_result(self, order_id: str) -> ReservationResult:
        reservation = self._reservation(order_id)
        return ReservationResult(
            order_id=order_id,
            first_sale=self.first_sale_order == order_id,
            reserved=self._money(reservation.amount if reservation else 0),
        )

    def _reservation(self, order_id: str) -> Reservation | None:
        return next((r for r in self.reservations if r.order_id == order_id), None)

    def _lot(self, lot_id: str) -> CreditLot:
        return next(lot for lot in self.lots if lot.lot_id == lot_id)

    def _money(self, amount: int) -> Money:
        return Money(amount=amount, currency=self.currency)

    def event_ids(self) -> dict[str, Any]:
        """Every credit event names the reseller (this account's id)."""
        return {"reseller_id": self.id}

    def _record_movement(
        self,
        event_type: type[CreditReserved | CreditReleased | CreditConsumed],
        reservation: Reservation,
        now: datetime,
    ) -> None:
        """A reservation's credit moved: the event belongs to its order's workflow."""
        order_id = reservation.order_id
        amount = self._money(reservation.amount)
        self.record(event_type, at=now, amount=amount, order_id=order_id, correlation_id=order_id)

    def _enter(
        self,
        kind: EntryKind,
        lot_id: str,
        amount: int,
        at: datetime,
        order_id: str | None,
        cause: str,
    ) -> None:
        entry = LedgerEntry(
            entry_id=f"{self.id}:{len(self.entries) + 1}",
            kind=kind,
            lot_id=lot_id,
            amount=amount,
            at=at,
            order_id=order_id,
            cause=cause,
        )
        self.entries = [*self.entries, entry]
