"""Orders' handlers: one function per message (and per HTTP upload).

Each loads the ``OrderLine`` (or the ``ApiKey``), lets the domain decide, and saves it
with its events.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import uuid4

from services.orders.api_keys import ApiKey, key_id_for, key_id_of, refuse_unknown_key
from services.orders.domain import (
    OrderLine,
    Proof,
    order_id_for,
    require_reseller_email,
)
from services.orders.proofs import check_proof, proof_filename
from services.orders.store import OrderStore
from shared.basics.catalogue import Catalogue
from shared.basics.clock import Clock
from shared.basics.emails import normalise_email
from shared.basics.errors import Conflict, ErrorCode, RateLimited, Refused
from shared.basics.money import Money
from shared.contracts.api_keys import (
    ApiKeyCreatedResult,
    ApiKeyList,
    ApiKeyView,
    CreateApiKey,
    ListApiKeys,
    RevokeApiKey,
)
from shared.contracts.base import ErrorBody
from shared.contracts.credits import ReservationResult, ReserveCredit
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
    PlanUpgraded,
    ProofView,
    ReviewProof,
    UpgradePlan,
    UpgradeResult,
)
from shared.contracts.quotes import QuoteResult, RedeemQuote
from shared.runtime.messaging import Bus, Delivery, reply_body
from shared.runtime.store import reading_ahead

# apikey.create's reply shows the key; the inbox forgets it this long after answering.
SHOWN_KEY_GRACE = timedelta(minutes=5)
SHOWN_ONCE = ErrorBody(
    code=ErrorCode.API_KEY_SHOWN_ONCE,
    message="this message created an API key, shown once in its first reply: if the key "
    "was lost, revoke it and create another",
)


@dataclass(frozen=True)
class OrdersDeps:
    store: OrderStore
    bus: Bus
    clock: Clock
    catalogue: Catalogue
    proof_max_bytes: int
    unpaid_ttl: timedelta
    api_token: str  # the internal-system token of the orders HTTP API (acts for X-Reseller-Id)


async def _load(deps: OrdersDeps, order_id: str, reseller_id: str) -> OrderLine:
    line = await deps.store.lines.load(order_id)
    line.check_owner(reseller_id)
    return line


async def _open_line(
    deps: OrdersDeps,
    delivery: Delivery,
    *,
    order_id: str,
    redeem: RedeemQuote,
    use_credit: bool,
    reseller_email: str | None,
    upgrade_of: OrderLine | None = None,
    credit_note: Money | None = None,
) -> OrderLine:
    """Price a new line from its quote (quotes) and its reservation (credits), then store it.

    Each call to another service is idempotent per order id and carries a message id
    derived from the order id (itself derived from the reseller and the placing message),
    so a redelivered command repeats nothing and two orders never share a call's id.
    """
    quote = await deps.bus.call(
        redeem, QuoteResult, message_id=f"{order_id}/redeem", correlation_id=order_id
    )
    note = credit_note or Money.zero(quote.list_price.currency)
    reservation = await deps.bus.call(
        ReserveCredit(
            reseller_id=quote.reseller_id,
            order_id=order_id,
            space=quote.space,
            wanted=quote.upgrade_due(note),
            use_credit=use_credit,
            first_sale_requested=quote.first_sale,
        ),
        ReservationResult,
        message_id=f"{order_id}/reserve",
        correlation_id=order_id,
    )
    line = OrderLine.place(
        order_id=order_id,
        quote=quote,
        reservation=reservation,
        use_credit=use_credit,
        reseller_email=reseller_email,
        now=deps.clock.now(),
        unpaid_ttl=deps.unpaid_ttl,
        upgrade_of=upgrade_of,
        credit_note=note,
    )
    if not await deps.store.lines.insert(line):  # a concurrent redelivery inserted it first
        return await deps.store.lines.load(order_id)
    return line


async def place_order(
    cmd: PlaceOrder, delivery: Delivery, *, deps: OrdersDeps
) -> OrderPlacedResult:
    """``order.place`` (O1, O2): redeem the quote, reserve credit, open the line."""
    order_id = order_id_for(cmd.reseller_id, delivery.message_id)
    existing = await deps.store.lines.get(order_id)
    if existing is not None:
        return existing.placed_result()
    reseller_email = normalise_email(cmd.reseller_email) if cmd.reseller_email else None
    require_reseller_email(cmd.space, reseller_email)  # before any quote is used
    line = await _open_line(
        deps,
        delivery,
        order_id=order_id,
        redeem=RedeemQuote(
            reseller_id=cmd.reseller_id,
            space=cmd.space,
            order_id=order_id,
            quote_number=cmd.quote_number,
            edition=None if cmd.quote_number else cmd.edition,
            billing=None if cmd.quote_number else cmd.billing,
        ),
        use_credit=cmd.use_credit,
        reseller_email=reseller_email,
    )
    return line.placed_result()


async def upgrade_plan(cmd: UpgradePlan, delivery: Delivery, *, deps: OrdersDeps) -> UpgradeResult:
    """``plan.upgrade`` (O7): a new line for a higher edition, the current plan's remaining
    time as its credit note. The current line is marked first, so two upgrades of one
    plan cannot both be placed."""
    upgrade_id = order_id_for(cmd.reseller_id, delivery.message_id)
    existing = await deps.store.lines.get(upgrade_id)
    if existing is None:
        target_rank = deps.catalogue.rank(cmd.edition)
        base = await _load(deps, cmd.order_id, cmd.reseller_id)
        pending = base.upgraded_by
        pending_exists = pending is None or await deps.store.lines.get(pending) is not None

        def start(line: OrderLine) -> Money:
            return line.start_upgrade(
                reseller_id=cmd.reseller_id,
                upgrade_order_id=upgrade_id,
                current_rank=deps.catalogue.rank(line.edition),
                target_rank=target_rank,
                now=deps.clock.now(),
                pending_line_exists=pending_exists or line.upgraded_by != pending,
            )

        started = await deps.store.lines.mutate(cmd.order_id, start, message_id=None)
        current, note = started.aggregate, started.decision
        assert note is not None  # no message id: never a replay
        existing = await _open_line(
            deps,
            delivery,
            order_id=upgrade_id,
            redeem=RedeemQuote(
                reseller_id=cmd.reseller_id,
                space=current.space,
                order_id=upgrade_id,
                edition=cmd.edition,
                billing=cmd.billing or current.billing,
            ),
            use_credit=cmd.use_credit,
            reseller_email=current.reseller_email,
            upgrade_of=current,
            credit_note=note,
        )
    existing.check_owner(cmd.reseller_id)
    return UpgradeResult(
        order_id=existing.id,
        credit_note=existing.price.credit_note + existing.price.credit_note_excess,
        credit_note_applied=existing.price.credit_note,
        credit_note_to_balance=existing.price.credit_note_excess,
        amount_due=existing.price.amount_due,
    )


async def on_plan_upgraded(event: PlanUpgraded, delivery: Delivery, *, deps: OrdersDeps) -> None:
    """Our own ``plan.upgraded``: the replaced line becomes ``superseded`` (O7)."""
    await deps.store.lines.mutate(
        event.previous_order_id,
        lambda line: line.supersede(by=event.order_id, now=deps.clock.now()),
        message_id=delivery.message_id,
        digest=delivery.digest,
    )


async def _abandon_upgrade(deps: OrdersDeps, line: OrderLine) -> None:
    """A cancelled or expired upgrade frees the line it would have replaced."""
    if line.upgrade_of is not None:
        await deps.store.lines.mutate(
            line.upgrade_of,
            lambda base: base.clear_upgrade(line.id, deps.clock.now()),
            message_id=None,
        )


async def expire_unpaid_lines(now: datetime, *, deps: OrdersDeps) -> int:
    """One pass of the O8 job: unpaid lines past their delay expire (credits then releases)."""
    expired = 0
    for order_id in await deps.store.unpaid_due(now):
        saved = await deps.store.lines.mutate(
            order_id, lambda line: line.expire_if_unpaid(now), message_id=None
        )
        if saved.decision:
            expired += 1
            await _abandon_upgrade(deps, saved.aggregate)
    return expired


async def cancel_order(
    cmd: CancelOrder, delivery: Delivery, *, deps: OrdersDeps
) -> OrderStatusResult:
    """``order.cancel`` (O8)."""
    saved = await deps.store.lines.mutate(
        cmd.order_id,
        lambda line: line.cancel(reseller_id=cmd.reseller_id, now=deps.clock.now()),
        message_id=delivery.message_id,
    )
    line = saved.aggregate
    await _abandon_upgrade(deps, line)
    return OrderStatusResult(order_id=line.id, status=line.status)


async def review_proof(
    cmd: ReviewProof, delivery: Delivery, *, deps: OrdersDeps
) -> OrderStatusResult:
    """``proof.review`` (O4), by operations. The reviewer is the operator the operations
    client names, recorded with the broker identity that published the review."""
    reviewer = f"{cmd.reviewer} via {delivery.publisher or 'unknown publisher'}"

    def decide(line: OrderLine) -> None:
        if cmd.decision == "accept":
            line.accept_proof(reviewer=reviewer, now=deps.clock.now())
        else:
            line.reject_proof(
                reviewer=reviewer,
                reason=cmd.reason,
                now=deps.clock.now(),
                unpaid_ttl=deps.unpaid_ttl,
            )

    saved = await deps.store.lines.mutate(cmd.order_id, decide, message_id=delivery.message_id)
    line = saved.aggregate
    return OrderStatusResult(order_id=line.id, status=line.status)


async def bind_plan(cmd: BindPlan, delivery: Delivery, *, deps: OrdersDeps) -> PlanBoundResult:
    """``plan.bind`` (O5, O6): the customer's email, validated and normalised, for good."""
    email = normalise_email(cmd.customer_email)
    saved = await deps.store.lines.mutate(
        cmd.order_id,
        lambda line: line.bind(
            reseller_id=cmd.reseller_id, customer_email=email, now=deps.clock.now()
        ),
        message_id=delivery.message_id,
    )
    line = saved.aggregate
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
    """``order.list`` (O9); with a limit or filters, one page of them and their total."""
    if query.limit is None and query.space is None and query.status is None and not query.offset:
        lines = await deps.store.list_for(query.reseller_id)
        return OrderList(orders=[line.view() for line in lines], total=len(lines))
    page, total = await deps.store.page_for(
        query.reseller_id,
        space=query.space,
        status=query.status,
        limit=query.limit,
        offset=query.offset,
    )
    return OrderList(orders=[line.view() for line in page], total=total)


#: Reads the upload's body, once its line is known to take a proof: the file's name as sent
#: and its bytes.
ProofBody = Callable[[], Awaitable[tuple[str | None, bytes]]]


async def submit_proof(
    *, order_id: str, reseller_id: str, body: ProofBody, deps: OrdersDeps
) -> ProofView:
    """HTTP proof upload (O3): checked by content, stored in GridFS with its SHA-256.

    The line is checked (O9 its reseller, O3 it takes a proof) before the body is read,
    and that read serves the save too (``load_ahead``). The file is stored before the line
    refers to it; if the line then refuses (it was reviewed or cancelled meanwhile, or took
    its last proof), or too many uploads race for it, the file is deleted: nothing
    half-written. A race lost too often answers ``busy`` (503, retry), never an internal
    error.
    """
    with reading_ahead():
        line = await deps.store.lines.load_ahead(order_id)
        line.check_owner(reseller_id)
        line.check_takes_proof()
        filename, content = await body()
        return await _store_proof(order_id, filename, content, deps)


async def _store_proof(
    order_id: str, filename: str | None, content: bytes, deps: OrdersDeps
) -> ProofView:
    """Check the bytes, store the file, then the line's proof (``submit_proof``)."""
    # Parsing a PDF or decoding an image is CPU work: off the event loop.
    content_type = await asyncio.to_thread(check_proof, content, max_bytes=deps.proof_max_bytes)
    name = proof_filename(filename)
    sha256 = hashlib.sha256(content).hexdigest()
    file_id = await deps.store.store_proof_file(
        filename=name,
        content=content,
        content_type=content_type,
        sha256=sha256,
        order_id=order_id,
    )
    proof = Proof(
        proof_id=f"pr_{uuid4().hex[:20]}",
        file_id=file_id,
        filename=name,
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
        )
    except Conflict as exc:
        await deps.store.delete_proof_file(file_id)
        raise RateLimited(
            ErrorCode.BUSY,
            f"too many proofs are being uploaded to order {order_id} at once: try again",
            retry_after=1,
        ) from exc
    except BaseException:
        await deps.store.delete_proof_file(file_id)
        raise
    return proof.view()


# --- reseller API keys (CONTRACT.md, Identities) ----------------------------------------


async def authenticate(presented: str, *, acting_for: str | None, deps: OrdersDeps) -> str:
    """The reseller a bearer credential acts as on the orders HTTP API.

    A reseller API key acts as its own reseller only (``acting_for``, the
    ``X-Reseller-Id`` header, may name it and nobody else); the internal-system token
    acts for the reseller ``acting_for`` names. Anything else is refused (401)."""
    key_id = key_id_of(presented)
    if key_id is not None:
        api_key = await deps.store.keys.get(key_id)
        if api_key is None:
            raise refuse_unknown_key(presented)
        return api_key.authenticate(presented, acting_for=acting_for)
    if presented and hmac.compare_digest(presented.encode(), deps.api_token.encode()):
        if acting_for is None:
            raise Refused(
                ErrorCode.INVALID_REQUEST,
                "the internal-system token acts for the reseller named in X-Reseller-Id: send it",
            )
        return acting_for
    raise Refused(ErrorCode.UNAUTHORISED, "missing or wrong API key or token")


async def create_api_key(
    cmd: CreateApiKey, delivery: Delivery, *, deps: OrdersDeps
) -> ApiKeyCreatedResult:
    """``apikey.create``: a new key for the reseller, shown once in this reply."""
    key_id = key_id_for(cmd.reseller_id, delivery.message_id)
    api_key, shown = ApiKey.issue(
        key_id=key_id,
        reseller_id=cmd.reseller_id,
        label=cmd.label,
        secret=secrets.token_urlsafe(32),
        now=deps.clock.now(),
        by=delivery.publisher,
    )
    if not await deps.store.keys.insert(api_key):  # redelivered after the key was stored
        raise Refused(SHOWN_ONCE.code, f"{SHOWN_ONCE.message} (key {key_id})")
    return shown


async def revoke_api_key(cmd: RevokeApiKey, delivery: Delivery, *, deps: OrdersDeps) -> ApiKeyView:
    """``apikey.revoke``: the key is refused (401) from now on."""
    saved = await deps.store.keys.mutate(
        cmd.key_id,
        lambda key: key.revoke(
            reseller_id=cmd.reseller_id, now=deps.clock.now(), by=delivery.publisher
        ),
        message_id=delivery.message_id,
    )
    return saved.aggregate.view()


async def list_api_keys(query: ListApiKeys, _: Delivery, *, deps: OrdersDeps) -> ApiKeyList:
    """``apikey.list``: the reseller's keys, without the keys or their digests."""
    return ApiKeyList(keys=[key.view() for key in await deps.store.keys_of(query.reseller_id)])


async def forget_shown_keys(now: datetime, *, deps: OrdersDeps) -> int:
    """Periodic: ``apikey.create`` replies kept by the inbox lose the key after
    ``SHOWN_KEY_GRACE``; a later resend is told the key was shown once."""
    return await deps.store.forget_shown_keys(
        answered_before=now - SHOWN_KEY_GRACE, instead=reply_body(error=SHOWN_ONCE).decode()
    )
