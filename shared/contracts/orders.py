"""Order line messages (O1-O9): placing, proofs, review, binding, upgrade, cancellation."""

from __future__ import annotations

from datetime import datetime, timedelta
from fractions import Fraction
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from shared.basics.money import Money, round_half_up
from shared.contracts.base import Billing, Command, Event, Query, Space
from shared.contracts.quotes import quote_or_edition

OrderStatus = Literal[
    "awaiting_proof", "proof_submitted", "paid", "bound", "cancelled", "expired", "superseded"
]

_ID = Field(min_length=1, max_length=128)


class OrderPrice(BaseModel):
    """The price fixed at placement (O1).

    ``amount_due = list_price - discount - credit_note - credit_applied``. On a first
    sale (Q4) ``discount`` is zero and ``first_sale_credit`` is the discount, granted to
    the balance once paid (C1). An upgrade's ``credit_note`` is the pro-rata value of the
    plan it replaces, capped at the amount due; the rest, ``credit_note_excess``, goes
    to the balance once paid (O7).
    """

    list_price: Money
    discount: Money
    credit_applied: Money
    amount_due: Money
    first_sale: bool = False
    first_sale_credit: Money
    credit_note: Money = Field(default_factory=Money.zero)
    credit_note_excess: Money = Field(default_factory=Money.zero)

    def value(self) -> Money:
        """What the reseller really pays for this plan, whatever the means (cash, balance
        credit, credit note): the price net of the reseller discount, first-sale included."""
        return self.list_price - self.discount - self.first_sale_credit

    def credit_note_at(self, *, start: datetime, end: datetime, now: datetime) -> Money:
        """What the rest of the plan is worth when it is upgraded at ``now`` (O7): remaining
        / period length x ``value()``, half up (M3) on exact milliseconds; zero once ended.

        On the contract model, so that the orders service (which records it) and the
        reseller space (which previews it before the reseller confirms) compute one figure."""
        if now >= end:
            return Money.zero(self.list_price.currency)
        value = self.value()
        ms = timedelta(milliseconds=1)
        share = Fraction((end - now) // ms, (end - start) // ms)
        return Money(amount=round_half_up(share * value.amount), currency=value.currency)


class ProofView(BaseModel):
    proof_id: str
    filename: str
    content_type: str
    size: int
    sha256: str
    uploaded_at: AwareDatetime


class HistoryEntry(BaseModel):
    at: AwareDatetime
    action: str
    status: OrderStatus
    by: str | None = None
    reason: str | None = None


class OrderLineView(BaseModel):
    """An order line as its reseller sees it (``order.get``)."""

    order_id: str
    reseller_id: str
    space: Space
    edition: str
    billing: Billing
    quote_number: str
    status: OrderStatus
    price: OrderPrice
    customer_email: str | None = None
    period_start: AwareDatetime | None = None
    period_end: AwareDatetime | None = None
    rejection_reason: str | None = None
    proofs: list[ProofView]
    history: list[HistoryEntry]
    placed_at: AwareDatetime
    unpaid_expires_at: AwareDatetime | None = Field(
        default=None, description="O8: an unpaid line awaiting proof expires then."
    )
    upgrade_of: str | None = None
    upgraded_by: str | None = Field(default=None, description="The pending or paid upgrade line.")
    superseded_by: str | None = None


class OrderPlacedResult(BaseModel):
    order_id: str
    status: OrderStatus
    amount_due: Money
    credit_reserved: Money
    quote_number: str


class OrderStatusResult(BaseModel):
    order_id: str
    status: OrderStatus


class PlanBoundResult(BaseModel):
    order_id: str
    status: OrderStatus
    customer_email: str
    period_start: AwareDatetime
    period_end: AwareDatetime


class UpgradeResult(BaseModel):
    order_id: str = Field(description="The new line for the higher edition.")
    credit_note: Money = Field(description="Pro-rata value of the current plan's remaining time.")
    credit_note_applied: Money = Field(description="The part applied, capped at the amount due.")
    credit_note_to_balance: Money = Field(
        description="The excess, granted to the balance on payment."
    )
    amount_due: Money


class OrderList(BaseModel):
    orders: list[OrderLineView]
    total: int | None = Field(
        default=None, description="Lines matching the query's filters, before its limit."
    )


class PlaceOrder(Command):
    """``order.place``: from a valid quote of the same reseller, or from edition + billing (O1).

    ``reseller_email`` (extension) is required for the personal space: personal lines
    bind to the reseller's own email on payment (O5).
    """

    ROUTING_KEY = "order.place"
    RESULT = OrderPlacedResult
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"reseller_id": "r-42", "space": "reseller", "quote_number": "Q-2026-000001"},
                {
                    "reseller_id": "r-42",
                    "space": "reseller",
                    "edition": "starter",
                    "billing": "monthly",
                },
            ]
        }
    )

    reseller_id: str = _ID
    space: Space
    quote_number: str | None = None
    edition: str | None = None
    billing: Billing | None = None
    use_credit: bool = True
    reseller_email: str | None = None

    _quote_or_edition = model_validator(mode="after")(quote_or_edition)


class CancelOrder(Command):
    """``order.cancel``: the reseller cancels an unpaid line (O8)."""

    ROUTING_KEY = "order.cancel"
    RESULT = OrderStatusResult

    reseller_id: str = _ID
    order_id: str = _ID


class ReviewProof(Command):
    """``proof.review``: operations accept or reject the submitted proof (O4)."""

    ROUTING_KEY = "proof.review"
    RESULT = OrderStatusResult

    order_id: str = _ID
    decision: Literal["accept", "reject"]
    reviewer: str = Field(min_length=1, max_length=128)
    reason: str | None = Field(default=None, max_length=2000)


class BindPlan(Command):
    """``plan.bind``: bind a paid reseller-space line to the final customer's email (O5)."""

    ROUTING_KEY = "plan.bind"
    RESULT = PlanBoundResult

    reseller_id: str = _ID
    order_id: str = _ID
    customer_email: str = Field(min_length=1, max_length=320)


class UpgradePlan(Command):
    """``plan.upgrade``: move a bound, active line to a higher edition (O7)."""

    ROUTING_KEY = "plan.upgrade"
    RESULT = UpgradeResult

    reseller_id: str = _ID
    order_id: str = _ID
    edition: str = Field(min_length=1, max_length=64)
    billing: Billing | None = None
    use_credit: bool = True


class GetOrder(Query):
    """``order.get``: one of the reseller's own lines (O9)."""

    ROUTING_KEY = "order.get"
    RESULT = OrderLineView

    reseller_id: str = _ID
    order_id: str = _ID


class ListOrders(Query):
    """``order.list``: the reseller's lines, newest first (O9)."""

    ROUTING_KEY = "order.list"
    RESULT = OrderList

    reseller_id: str = _ID
    # Extension (pages of a long list, the reseller space): without them, every line.
    space: Space | None = None
    status: OrderStatus | None = None
    limit: int | None = Field(default=None, ge=1, le=500, description="At most this many.")
    offset: int = Field(default=0, ge=0, le=1_000_000, description="After skipping these.")


class _OrderEvent(Event):
    order_id: str
    reseller_id: str


class OrderPlaced(_OrderEvent):
    ROUTING_KEY = "order.placed"
    space: Space
    edition: str
    billing: Billing
    quote_number: str
    price: OrderPrice
    use_credit: bool
    upgrade_of: str | None = None


class OrderCancelled(_OrderEvent):
    ROUTING_KEY = "order.cancelled"


class OrderExpired(_OrderEvent):
    ROUTING_KEY = "order.expired"


class ProofSubmitted(_OrderEvent):
    ROUTING_KEY = "proof.submitted"
    proof_id: str
    sha256: str
    size: int
    content_type: str


class ProofAccepted(_OrderEvent):
    """Payment accepted: carries what credits needs for C1 (first-sale credit) and O2."""

    ROUTING_KEY = "proof.accepted"
    reviewer: str
    space: Space
    edition: str
    billing: Billing
    price: OrderPrice


class ProofRejected(_OrderEvent):
    ROUTING_KEY = "proof.rejected"
    reviewer: str
    reason: str


class PlanBound(_OrderEvent):
    """The plan now runs for ``customer_email`` from ``period_start`` to ``period_end`` (O5, O6)."""

    ROUTING_KEY = "plan.bound"
    space: Space
    customer_email: str
    edition: str
    billing: Billing
    period_start: AwareDatetime
    period_end: AwareDatetime


class PlanUpgraded(_OrderEvent):
    ROUTING_KEY = "plan.upgraded"
    previous_order_id: str
    customer_email: str
    edition: str
    billing: Billing
    period_start: AwareDatetime
    period_end: AwareDatetime
    credit_note: Money


class PlanSuperseded(_OrderEvent):
    ROUTING_KEY = "plan.superseded"
    superseded_by: str
    customer_email: str
