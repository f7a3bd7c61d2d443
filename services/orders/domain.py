"""Order line rules (O1-O9): the ``OrderLine`` aggregate and its transitions. No I/O."""

from __future__ import annotations

import calendar
from datetime import datetime
from uuid import NAMESPACE_URL, uuid5

from pydantic import AwareDatetime, BaseModel

from shared.contracts.base import Billing, Space
from shared.contracts.orders import (
    HistoryEntry,
    OrderCancelled,
    OrderLineView,
    OrderPlaced,
    OrderPlacedResult,
    OrderPrice,
    OrderStatus,
    PlanBound,
    ProofAccepted,
    ProofRejected,
    ProofSubmitted,
    ProofView,
)
from shared.contracts.quotes import QuoteResult
from shared.errors import ErrorCode, Refused
from shared.store import Aggregate

# O3: proofs are checked by content, not by name.
PROOF_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"%PDF-", "application/pdf"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
)
UNPAID: frozenset[OrderStatus] = frozenset({"awaiting_proof", "proof_submitted"})


def order_id_for(reseller_id: str, message_id: str) -> str:
    """The order line id caused by one ``order.place`` message: a resend creates nothing new."""
    return "ol_" + uuid5(NAMESPACE_URL, f"xo-reseller:{reseller_id}:{message_id}").hex[:24]


def sniff_proof(content: bytes, *, max_bytes: int) -> str:
    """The proof's content type from its first bytes (O3), or a precise refusal."""
    if not content:
        raise Refused(ErrorCode.EMPTY_PROOF, "the proof file is empty")
    if len(content) > max_bytes:
        raise Refused(
            ErrorCode.PROOF_TOO_LARGE, f"the proof exceeds the limit of {max_bytes} bytes"
        )
    for signature, content_type in PROOF_SIGNATURES:
        if content.startswith(signature):
            return content_type
    raise Refused(
        ErrorCode.UNSUPPORTED_PROOF_TYPE,
        "a proof must be a PDF, PNG or JPEG file (checked by content, not by name)",
    )


def period_end(start: datetime, billing: Billing) -> datetime:
    """One calendar month or one year after ``start`` (O6), clamped to the month's last day."""
    months = 1 if billing == "monthly" else 12
    month_index = start.month - 1 + months
    year, month = start.year + month_index // 12, month_index % 12 + 1
    day = min(start.day, calendar.monthrange(year, month)[1])
    return start.replace(year=year, month=month, day=day)


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
        return ProofView.model_validate(self.model_dump())


class OrderLine(Aggregate):
    """An order line in a reseller's space, from placement to binding."""

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

    # --- O1 -------------------------------------------------------------------------

    @classmethod
    def place(
        cls,
        *,
        order_id: str,
        quote: QuoteResult,
        use_credit: bool,
        reseller_email: str | None,
        now: datetime,
    ) -> OrderLine:
        """A new line awaiting proof, its price fixed from the redeemed quote (O1)."""
        if quote.space == "personal" and reseller_email is None:
            raise Refused(
                ErrorCode.RESELLER_EMAIL_REQUIRED,
                "a personal-space order binds to the reseller's own email: give reseller_email",
            )
        price = OrderPrice(
            list_price=quote.list_price,
            discount=quote.discount,
            credit_applied=quote.credit_applied,
            amount_due=quote.amount_due,
            first_sale=quote.first_sale,
            first_sale_credit=quote.first_sale_credit,
        )
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
        )
        line._log(now, "placed")
        line.record(
            OrderPlaced(
                order_id=order_id,
                reseller_id=line.reseller_id,
                space=line.space,
                edition=line.edition,
                billing=line.billing,
                quote_number=line.quote_number,
                price=price,
                use_credit=use_credit,
                occurred_at=now,
                correlation_id=order_id,
            )
        )
        return line

    # --- O9 -------------------------------------------------------------------------

    def check_owner(self, reseller_id: str) -> None:
        """A reseller sees and acts on its own lines only (O9)."""
        if reseller_id != self.reseller_id:
            raise Refused(ErrorCode.NOT_YOUR_ORDER, f"order {self.id} belongs to another reseller")

    # --- O3 / O4 --------------------------------------------------------------------

    def submit_proof(self, proof: Proof, now: datetime) -> None:
        """Keep the upload in the history; the line waits for review (O3).

        A second upload before the review is accepted too (a corrected scan); every
        upload stays in ``proofs``.
        """
        if self.status not in UNPAID:
            raise Refused(
                ErrorCode.ORDER_NOT_AWAITING_PROOF,
                f"order {self.id} is {self.status}: proofs are taken only before payment",
            )
        self.proofs = [*self.proofs, proof]
        self.status = "proof_submitted"
        self.rejection_reason = None
        self._log(now, "proof_submitted", reason=f"{proof.filename} sha256={proof.sha256}")
        self.record(
            ProofSubmitted(
                **self._ids(),
                proof_id=proof.proof_id,
                sha256=proof.sha256,
                size=proof.size,
                content_type=proof.content_type,
                occurred_at=now,
                correlation_id=self.id,
            )
        )

    def accept_proof(self, *, reviewer: str, now: datetime) -> None:
        """Payment accepted: the line is paid (O4); a personal line binds to the reseller (O5)."""
        self._check_reviewable()
        self.status = "paid"
        self._log(now, "proof_accepted", by=reviewer)
        self.record(
            ProofAccepted(
                **self._ids(),
                reviewer=reviewer,
                space=self.space,
                edition=self.edition,
                billing=self.billing,
                price=self.price,
                occurred_at=now,
                correlation_id=self.id,
            )
        )
        if self.space == "personal":
            assert self.reseller_email is not None  # place() requires it
            self._bind(self.reseller_email, now, by=reviewer)

    def reject_proof(self, *, reviewer: str, reason: str | None, now: datetime) -> None:
        """Back to awaiting proof, the reason visible to the reseller (O4)."""
        if not reason or not reason.strip():
            raise Refused(ErrorCode.REJECTION_REASON_REQUIRED, "a rejection needs a reason")
        self._check_reviewable()
        self.status = "awaiting_proof"
        self.rejection_reason = reason.strip()
        self._log(now, "proof_rejected", by=reviewer, reason=self.rejection_reason)
        self.record(
            ProofRejected(
                **self._ids(),
                reviewer=reviewer,
                reason=self.rejection_reason,
                occurred_at=now,
                correlation_id=self.id,
            )
        )

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
            PlanBound(
                **self._ids(),
                space=self.space,
                customer_email=email,
                edition=self.edition,
                billing=self.billing,
                period_start=self.period_start,
                period_end=self.period_end,
                occurred_at=now,
                correlation_id=self.id,
            )
        )

    # --- O8 -------------------------------------------------------------------------

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
        self.record(OrderCancelled(**self._ids(), occurred_at=now, correlation_id=self.id))

    # --- views ----------------------------------------------------------------------

    def placed_result(self) -> OrderPlacedResult:
        return OrderPlacedResult(
            order_id=self.id,
            status=self.status,
            amount_due=self.price.amount_due,
            credit_reserved=self.price.credit_applied,
            quote_number=self.quote_number,
        )

    def view(self) -> OrderLineView:
        return OrderLineView(
            order_id=self.id,
            reseller_id=self.reseller_id,
            space=self.space,
            edition=self.edition,
            billing=self.billing,
            quote_number=self.quote_number,
            status=self.status,
            price=self.price,
            customer_email=self.customer_email,
            period_start=self.period_start,
            period_end=self.period_end,
            rejection_reason=self.rejection_reason,
            proofs=[p.view() for p in self.proofs],
            history=self.history,
            placed_at=self.placed_at,
        )

    def _ids(self) -> dict[str, str]:
        return {"order_id": self.id, "reseller_id": self.reseller_id}

    def _log(
        self, now: datetime, action: str, *, by: str | None = None, reason: str | None = None
    ) -> None:
        entry = HistoryEntry(at=now, action=action, status=self.status, by=by, reason=reason)
        self.history = [*self.history, entry]
