"""Order line rules (O1-O9): the ``OrderLine`` aggregate and its transitions. No I/O."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import NAMESPACE_URL, uuid5

from pydantic import AwareDatetime, BaseModel

from services.orders.pricing import fix_price
from shared.basics.clock import add_months
from shared.basics.errors import ErrorCode, Refused
from shared.basics.money import Money
from shared.contracts.base import Billing, Space
from shared.contracts.credits import ReservationResult
from shared.contracts.orders import (
    HistoryEntry,
    OrderCancelled,
    OrderExpired,
    OrderLineView,
    OrderPlaced,
    OrderPlacedResult,
    OrderPrice,
    OrderStatus,
    PlanBound,
    PlanSuperseded,
    PlanUpgraded,
    ProofAccepted,
    ProofRejected,
    ProofSubmitted,
    ProofView,
)
from shared.contracts.quotes import QuoteResult
from shared.runtime.store import Aggregate

NOTHING_DUE = "system:nothing_due"  # the "reviewer" of a line with nothing to pay
MAX_PROOFS_PER_LINE = 20  # O3: corrected scans are welcome, an unbounded pile is not
UNPAID: frozenset[OrderStatus] = frozenset({"awaiting_proof", "proof_submitted"})


def unknown_order(order_id: str) -> Refused:
    """The refusal for an order id that names no line (the store raises it)."""
    return Refused(ErrorCode.UNKNOWN_ORDER, f"no order line {order_id}")


def order_id_for(reseller_id: str, message_id: str) -> str:
    """The order line id caused by one ``order.place`` message: a resend creates nothing new."""
    return "ol_" + uuid5(NAMESPACE_URL, f"xo-reseller:{reseller_id}:{message_id}").hex[:24]


def period_end(start: datetime, billing: Billing) -> datetime:
    """One calendar month or one year after ``start`` (O6), clamped to the month's last day."""
    return add_months(start, 1 if billing == "monthly" else 12)


def require_reseller_email(space: Space, reseller_email: str | None) -> None:
    """A personal-space line binds to the reseller's own email on payment (O5)."""
    if space == "personal" and reseller_email is None:
        raise Refused(
            ErrorCode.RESELLER_EMAIL_REQUIRED,
            "a personal-space order binds to the reseller's own email: give reseller_email",
        )


class Proof(BaseModel):
    """One uploaded wire-transfer proof; the file itself lives in GridFS."""

    proof_id: str
    file_id: str
    filename: str
    content_type: str
    size: int
    sha256: str
    uploaded_at: AwareDatetime

    def view(self) -> ProofView:
        return ProofView.model_validate(self, from_attributes=True)


class OrderLine(Aggregate):
    """An order line in a reseller's space, from placement to binding.

    Its life: ``awaiting_proof`` -> ``proof_submitted`` -> ``paid`` -> ``bound``, then
    ``superseded`` once an upgrade of it is paid; an unpaid line ends ``cancelled`` or
    ``expired``. Its money is fixed by ``pricing``.

    Kept whole (about 360 lines): one document is one consistency boundary, and its
    transitions read top to bottom in rule order (O1, O3-O4, O5-O6, O8, O7), each
    guarding its own preconditions and recording its event. Split across files, a
    reader would lose the one place that says what can happen to a line.
    """

    reseller_id: str
    space: Space
    edition: str
    billing: Billing
    quote_number: str
    price: OrderPrice
    use_credit: bool
    status: OrderStatus
    placed_at: AwareDatetime
    reseller_email: str | None = None
    customer_email: str | None = None
    period_start: AwareDatetime | None = None
    period_end: AwareDatetime | None = None
    rejection_reason: str | None = None
    proofs: list[Proof] = []
    history: list[HistoryEntry] = []
    unpaid_expires_at: AwareDatetime | None = None  # O8; top-level and indexed for the job
    upgrade_of: str | None = None  # O7: the line this one upgrades
    upgraded_by: str | None = None  # O7: the (pending or paid) upgrade of this line
    pending_credit_note: Money | None = None  # frozen when the upgrade was placed
    upgrade_started_at: AwareDatetime | None = None
    superseded_by: str | None = None

    # --- O1 -------------------------------------------------------------------------

    @classmethod
    def place(
        cls,
        *,
        order_id: str,
        quote: QuoteResult,
        reservation: ReservationResult,
        use_credit: bool,
        reseller_email: str | None,
        now: datetime,
        unpaid_ttl: timedelta,
        upgrade_of: OrderLine | None = None,
        credit_note: Money | None = None,
    ) -> OrderLine:
        """A new line awaiting proof, its price fixed from the quote and the reservation (O1)."""
        require_reseller_email(quote.space, reseller_email)
        price = fix_price(quote, reservation, credit_note or Money.zero(quote.list_price.currency))
        line = cls(
            id=order_id,
            reseller_id=quote.reseller_id,
            space=quote.space,
            edition=quote.edition,
            billing=quote.billing,
            quote_number=quote.quote_number,
            price=price,
            use_credit=use_credit,
            status="awaiting_proof",
            placed_at=now,
            reseller_email=reseller_email,
            unpaid_expires_at=now + unpaid_ttl,
            upgrade_of=upgrade_of.id if upgrade_of else None,
            # an upgrade runs for the customer of the line it replaces (O7)
            customer_email=upgrade_of.customer_email if upgrade_of else None,
        )
        line._log(now, "placed" if upgrade_of is None else "upgrade_placed", reason=line.upgrade_of)
        line.record(
            OrderPlaced,
            at=now,
            space=line.space,
            edition=line.edition,
            billing=line.billing,
            quote_number=line.quote_number,
            price=price,
            use_credit=use_credit,
            upgrade_of=line.upgrade_of,
        )
        if price.amount_due.amount == 0:  # all covered by credit: no wire transfer to prove
            line._pay(by=NOTHING_DUE, now=now)
        return line

    # --- O9 -------------------------------------------------------------------------

    def check_owner(self, reseller_id: str) -> None:
        """A reseller sees and acts on its own lines only (O9)."""
        if reseller_id != self.reseller_id:
            raise Refused(ErrorCode.NOT_YOUR_ORDER, f"order {self.id} belongs to another reseller")

    # --- O3 / O4 --------------------------------------------------------------------

    def check_takes_proof(self) -> None:
        """A line takes proofs while unpaid, up to ``MAX_PROOFS_PER_LINE`` (O3)."""
        if self.status not in UNPAID:
            raise Refused(
                ErrorCode.ORDER_NOT_AWAITING_PROOF,
                f"order {self.id} is {self.status}: proofs are taken only before payment",
            )
        if len(self.proofs) >= MAX_PROOFS_PER_LINE:
            raise Refused(
                ErrorCode.TOO_MANY_PROOFS,
                f"order {self.id} already has {len(self.proofs)} proofs, the most a line "
                "keeps: wait for the review",
            )

    def submit_proof(self, proof: Proof, now: datetime) -> None:
        """Keep the upload in the history; the line waits for review (O3).

        A second upload before the review is accepted too (a corrected scan); every
        upload stays in ``proofs``, up to ``MAX_PROOFS_PER_LINE``.
        """
        self.check_takes_proof()
        self.proofs = [*self.proofs, proof]
        self.status = "proof_submitted"
        self.rejection_reason = None
        self._log(now, "proof_submitted", reason=f"{proof.filename} sha256={proof.sha256}")
        self.record(
            ProofSubmitted,
            at=now,
            proof_id=proof.proof_id,
            sha256=proof.sha256,
            size=proof.size,
            content_type=proof.content_type,
        )

    def accept_proof(self, *, reviewer: str, now: datetime) -> None:
        """Payment accepted: the line is paid (O4)."""
        self._check_reviewable()
        self._pay(by=reviewer, now=now)

    def _pay(self, *, by: str, now: datetime) -> None:
        """Paid: a personal line binds to the reseller (O5), an upgrade to its customer (O7)."""
        self.status = "paid"
        self._log(now, "proof_accepted", by=by)
        self.record(
            ProofAccepted,
            at=now,
            reviewer=by,
            space=self.space,
            edition=self.edition,
            billing=self.billing,
            price=self.price,
        )
        if self.upgrade_of is not None:
            self._bind_upgrade(now, by=by)
        elif self.space == "personal":
            assert self.reseller_email is not None  # place() requires it
            self._bind(self.reseller_email, now, by=by)

    def reject_proof(
        self, *, reviewer: str, reason: str | None, now: datetime, unpaid_ttl: timedelta
    ) -> None:
        """Back to awaiting proof, the reason visible to the reseller (O4); the reseller
        gets a full unpaid delay again to send a better proof (O8)."""
        if not reason or not reason.strip():
            raise Refused(ErrorCode.REJECTION_REASON_REQUIRED, "a rejection needs a reason")
        self._check_reviewable()
        self.status = "awaiting_proof"
        self.unpaid_expires_at = now + unpaid_ttl
        self.rejection_reason = reason.strip()
        self._log(now, "proof_rejected", by=reviewer, reason=self.rejection_reason)
        self.record(ProofRejected, at=now, reviewer=reviewer, reason=self.rejection_reason)

    def _check_reviewable(self) -> None:
        if self.status != "proof_submitted":
            code = (
                ErrorCode.NO_PROOF_SUBMITTED
                if self.status == "awaiting_proof"
                else (ErrorCode.ORDER_NOT_AWAITING_PROOF)
            )
            raise Refused(code, f"order {self.id} is {self.status}: nothing to review")

    # --- O5 / O6 --------------------------------------------------------------------

    def bind(self, *, reseller_id: str, customer_email: str, now: datetime) -> None:
        """Bind a paid reseller-space line to the final customer, for good (O5)."""
        self.check_owner(reseller_id)
        if self.status in UNPAID:
            raise Refused(
                ErrorCode.ORDER_NOT_PAID,
                f"order {self.id} is {self.status}: only a paid line binds",
            )
        if self.customer_email is not None:
            raise Refused(
                ErrorCode.ALREADY_BOUND,
                f"order {self.id} is bound to {self.customer_email}; a binding cannot change",
            )
        if self.space == "personal":
            raise Refused(
                ErrorCode.PERSONAL_SPACE_BINDS_ITSELF,
                "a personal-space line binds to the reseller's own email on payment",
            )
        if self.status != "paid":
            raise Refused(
                ErrorCode.ORDER_NOT_PAID,
                f"order {self.id} is {self.status}: only a paid line binds",
            )
        self._bind(customer_email, now, by=reseller_id)

    def _bind(self, email: str, now: datetime, *, by: str) -> None:
        """The plan's period starts now and lasts one month or one year (O6)."""
        self.customer_email = email
        self.period_start = now
        self.period_end = period_end(now, self.billing)
        self.status = "bound"
        self._log(now, "bound", by=by, reason=email)
        self.record(
            PlanBound,
            at=now,
            space=self.space,
            customer_email=email,
            edition=self.edition,
            billing=self.billing,
            period_start=self.period_start,
            period_end=self.period_end,
        )

    # --- O8: an unpaid line ends, cancelled or expired ------------------------------

    def cancel(self, *, reseller_id: str, now: datetime) -> None:
        """The reseller cancels an unpaid line (O8)."""
        self.check_owner(reseller_id)
        if self.status not in UNPAID:
            raise Refused(
                ErrorCode.ORDER_NOT_CANCELLABLE,
                f"order {self.id} is {self.status}: only an unpaid line can be cancelled",
            )
        self.status = "cancelled"
        self._log(now, "cancelled", by=reseller_id)
        self.record(OrderCancelled, at=now)

    def expire_if_unpaid(self, now: datetime) -> bool:
        """An unpaid line still awaiting a proof expires after its delay (O8); True if it did.

        A line whose proof waits for review does not: the reseller did its part.
        """
        if (
            self.status != "awaiting_proof"
            or self.unpaid_expires_at is None
            or now < self.unpaid_expires_at
        ):
            return False
        self.status = "expired"
        self._log(now, "expired")
        self.record(OrderExpired, at=now)
        return True

    # --- O7: upgrades ----------------------------------------------------------------

    def start_upgrade(
        self,
        *,
        reseller_id: str,
        upgrade_order_id: str,
        current_rank: int,
        target_rank: int,
        now: datetime,
        pending_line_exists: bool = True,
        abandon_after: timedelta = timedelta(minutes=10),
    ) -> Money:
        """Reserve this bound, active line for one upgrade; value its remaining time.

        The credit note (``OrderPrice.credit_note_at``: the remaining time's share of what the
        plan was really paid) is frozen now, so a retried command agrees.
        """
        self.check_owner(reseller_id)
        if self.upgraded_by == upgrade_order_id and self.pending_credit_note is not None:
            return self.pending_credit_note
        if self.status == "superseded":
            raise Refused(ErrorCode.ORDER_SUPERSEDED, f"order {self.id} was already upgraded")
        if self.status != "bound" or self.period_start is None or self.period_end is None:
            raise Refused(
                ErrorCode.ORDER_NOT_BOUND,
                f"order {self.id} is {self.status}: only a bound, paid plan can be upgraded",
            )
        if now >= self.period_end:
            raise Refused(ErrorCode.PLAN_EXPIRED, f"the plan of order {self.id} has ended")
        if target_rank <= current_rank:
            raise Refused(
                ErrorCode.NOT_AN_UPGRADE,
                f"the target edition does not rank above {self.edition}: downgrades are refused",
            )
        abandoned = (
            self.upgraded_by is not None
            and not pending_line_exists
            and self.upgrade_started_at is not None
            and now - self.upgrade_started_at >= abandon_after
        )
        if abandoned:  # its placement failed for good: the upgrade line was never stored
            self._log(now, "upgrade_abandoned", reason=self.upgraded_by)
        elif self.upgraded_by is not None:
            raise Refused(
                ErrorCode.UPGRADE_IN_PROGRESS,
                f"order {self.id} already has a pending upgrade: {self.upgraded_by}",
            )
        note = self.price.credit_note_at(start=self.period_start, end=self.period_end, now=now)
        self.upgraded_by = upgrade_order_id
        self.pending_credit_note = note
        self.upgrade_started_at = now
        self._log(now, "upgrade_started", by=reseller_id, reason=upgrade_order_id)
        return note

    def clear_upgrade(self, upgrade_order_id: str, now: datetime) -> None:
        """The pending upgrade was cancelled or expired: the line can be upgraded again."""
        if self.upgraded_by == upgrade_order_id and self.status == "bound":
            self.upgraded_by = None
            self.pending_credit_note = None
            self.upgrade_started_at = None
            self._log(now, "upgrade_abandoned", reason=upgrade_order_id)

    def supersede(self, *, by: str, now: datetime) -> None:
        """The upgrade was paid: this plan is replaced (O7)."""
        if self.status == "superseded":
            return
        self.status = "superseded"
        self.superseded_by = by
        self.upgraded_by = by
        self._log(now, "superseded", reason=by)
        assert self.customer_email is not None
        self.record(PlanSuperseded, at=now, superseded_by=by, customer_email=self.customer_email)

    def _bind_upgrade(self, now: datetime, *, by: str) -> None:
        """A paid upgrade runs at once for the customer of the line it replaces (O6, O7)."""
        assert self.customer_email is not None
        assert self.upgrade_of is not None
        self.period_start = now
        self.period_end = period_end(now, self.billing)
        self.status = "bound"
        self._log(now, "bound", by=by, reason=self.customer_email)
        self.record(
            PlanUpgraded,
            at=now,
            previous_order_id=self.upgrade_of,
            customer_email=self.customer_email,
            edition=self.edition,
            billing=self.billing,
            period_start=self.period_start,
            period_end=self.period_end,
            credit_note=self.price.credit_note + self.price.credit_note_excess,
        )

    # --- views ----------------------------------------------------------------------

    def placed_result(self) -> OrderPlacedResult:
        return OrderPlacedResult(
            order_id=self.id,
            status=self.status,
            amount_due=self.price.amount_due,
            credit_reserved=self.price.credit_applied,
            quote_number=self.quote_number,
        )

    @property
    def order_id(self) -> str:
        """The views' name for ``id``."""
        return self.id

    def view(self) -> OrderLineView:
        """What the reseller sees; the unpaid deadline only while it can still apply (O8)."""
        view = OrderLineView.model_validate(self, from_attributes=True)
        if self.status not in UNPAID:
            view.unpaid_expires_at = None
        return view

    def event_ids(self) -> dict[str, Any]:
        """Every event of a line carries its ids; the line's id is its workflow's id."""
        return {"order_id": self.id, "reseller_id": self.reseller_id, "correlation_id": self.id}

    def _log(
        self, now: datetime, action: str, *, by: str | None = None, reason: str | None = None
    ) -> None:
        entry = HistoryEntry(at=now, action=action, status=self.status, by=by, reason=reason)
        self.history = [*self.history, entry]
