"""Orders' handlers: one function per message (and per HTTP upload).

Each loads the ``OrderLine``, lets the domain decide, and saves it with its events.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import NoReturn
from uuid import uuid4

from services.orders.domain import OrderLine, Proof, order_id_for, sniff_proof
from services.orders.store import OrderStore
from shared.clock import Clock
from shared.contracts.orders import (
    BindPlan,
    CancelOrder,
    GetOrder,
    ListOrders,
    OrderLineView,
    OrderList,
    OrderPlacedResult,
    OrderStatusResult,
    PlaceOrder,
    PlanBoundResult,
    ProofView,
    ReviewProof,
)
from shared.contracts.quotes import QuoteResult, RedeemQuote
from shared.emails import normalise_email
from shared.errors import ErrorCode, Refused
from shared.messaging import Bus, Delivery


@dataclass(frozen=True)
class OrdersDeps:
    store: OrderStore
    bus: Bus
    clock: Clock
    proof_max_bytes: int


def _unknown(order_id: str) -> NoReturn:
    raise Refused(ErrorCode.UNKNOWN_ORDER, f"no order line {order_id}")


async def _load(deps: OrdersDeps, order_id: str, reseller_id: str) -> OrderLine:
    line = await deps.store.lines.get(order_id)
    if line is None:
        _unknown(order_id)
    line.check_owner(reseller_id)
    return line


async def place_order(
    cmd: PlaceOrder, delivery: Delivery, *, deps: OrdersDeps
) -> OrderPlacedResult:
    """``order.place`` (O1): redeem the quote (or price edition + billing), open the line."""
    order_id = order_id_for(cmd.reseller_id, delivery.message_id)
    existing = await deps.store.lines.get(order_id)
    if existing is not None:
        return existing.placed_result()
    reseller_email = normalise_email(cmd.reseller_email) if cmd.reseller_email else None
    if cmd.space == "personal" and reseller_email is None:
        raise Refused(
            ErrorCode.RESELLER_EMAIL_REQUIRED,
            "a personal-space order binds to the reseller's own email: give reseller_email",
        )
    quote = await deps.bus.call(
        RedeemQuote(
            reseller_id=cmd.reseller_id,
            space=cmd.space,
            order_id=order_id,
            quote_number=cmd.quote_number,
            edition=None if cmd.quote_number else cmd.edition,
            billing=None if cmd.quote_number else cmd.billing,
        ),
        QuoteResult,
        message_id=delivery.derived_id("redeem"),
        correlation_id=order_id,
    )
    line = OrderLine.place(
        order_id=order_id,
        quote=quote,
        use_credit=cmd.use_credit,
        reseller_email=reseller_email,
        now=deps.clock.now(),
    )
    await deps.store.lines.insert(line)  # False: a concurrent redelivery inserted the same line
    return line.placed_result()


async def cancel_order(
    cmd: CancelOrder, delivery: Delivery, *, deps: OrdersDeps
) -> OrderStatusResult:
    """``order.cancel`` (O8)."""
    line = await deps.store.lines.mutate(
        cmd.order_id,
        lambda line: line.cancel(reseller_id=cmd.reseller_id, now=deps.clock.now()),
        message_id=delivery.message_id,
        missing=lambda: _unknown(cmd.order_id),
    )
    return OrderStatusResult(order_id=line.id, status=line.status)


async def review_proof(
    cmd: ReviewProof, delivery: Delivery, *, deps: OrdersDeps
) -> OrderStatusResult:
    """``proof.review`` (O4), by operations."""

    def decide(line: OrderLine) -> None:
        if cmd.decision == "accept":
            line.accept_proof(reviewer=cmd.reviewer, now=deps.clock.now())
        else:
            line.reject_proof(reviewer=cmd.reviewer, reason=cmd.reason, now=deps.clock.now())

    line = await deps.store.lines.mutate(
        cmd.order_id, decide, message_id=delivery.message_id, missing=lambda: _unknown(cmd.order_id)
    )
    return OrderStatusResult(order_id=line.id, status=line.status)


async def bind_plan(cmd: BindPlan, delivery: Delivery, *, deps: OrdersDeps) -> PlanBoundResult:
    """``plan.bind`` (O5, O6): the customer's email, validated and normalised, for good."""
    email = normalise_email(cmd.customer_email)
    line = await deps.store.lines.mutate(
        cmd.order_id,
        lambda line: line.bind(
            reseller_id=cmd.reseller_id, customer_email=email, now=deps.clock.now()
        ),
        message_id=delivery.message_id,
        missing=lambda: _unknown(cmd.order_id),
    )
    assert line.customer_email
    assert line.period_start
    assert line.period_end
    return PlanBoundResult(
        order_id=line.id,
        status=line.status,
        customer_email=line.customer_email,
        period_start=line.period_start,
        period_end=line.period_end,
    )


async def get_order(query: GetOrder, _: Delivery, *, deps: OrdersDeps) -> OrderLineView:
    """``order.get`` (O9)."""
    return (await _load(deps, query.order_id, query.reseller_id)).view()


async def list_orders(query: ListOrders, _: Delivery, *, deps: OrdersDeps) -> OrderList:
    """``order.list`` (O9)."""
    return OrderList(orders=[line.view() for line in await deps.store.list_for(query.reseller_id)])


async def submit_proof(
    *, order_id: str, reseller_id: str, filename: str, content: bytes, deps: OrdersDeps
) -> ProofView:
    """HTTP proof upload (O3): checked by content, stored in GridFS with its SHA-256.

    The file is stored before the line refers to it; if the line then refuses (it
    was reviewed or cancelled meanwhile), the file is deleted: nothing half-written.
    """
    content_type = sniff_proof(content, max_bytes=deps.proof_max_bytes)
    await _load(deps, order_id, reseller_id)  # refuse early: unknown or foreign line
    sha256 = hashlib.sha256(content).hexdigest()
    file_id = await deps.store.store_proof_file(
        filename=filename,
        content=content,
        content_type=content_type,
        sha256=sha256,
        order_id=order_id,
    )
    proof = Proof(
        proof_id=f"pr_{uuid4().hex[:20]}",
        file_id=file_id,
        filename=filename,
        content_type=content_type,
        size=len(content),
        sha256=sha256,
        uploaded_at=deps.clock.now(),
    )
    try:
        await deps.store.lines.mutate(
            order_id,
            lambda line: line.submit_proof(proof, deps.clock.now()),
            message_id=None,
            missing=lambda: _unknown(order_id),
        )
    except BaseException:
        await deps.store.delete_proof_file(file_id)
        raise
    return proof.view()
