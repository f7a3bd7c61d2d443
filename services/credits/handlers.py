"""Credits' handlers: one function per message, plus the periodic job.

Every change goes through ``DocumentStore.mutate`` on the reseller's account: one
versioned save per decision, the message id recorded in the same save. An account is
created on first use (``create=CreditAccount.new``): a reseller never is unknown here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from services.credits.domain import CreditAccount
from services.credits.store import CreditStore
from shared.basics.clock import Clock
from shared.contracts.credits import (
    BalanceResult,
    GetBalance,
    GetStatement,
    ReservationResult,
    ReserveCredit,
    StatementResult,
)
from shared.contracts.orders import OrderCancelled, OrderExpired, OrderPlaced, ProofAccepted
from shared.runtime import metrics
from shared.runtime.logging import get_logger
from shared.runtime.messaging import Delivery

log = get_logger(__name__)


@dataclass(frozen=True)
class CreditsDeps:
    store: CreditStore
    clock: Clock
    orphan_reservation_delay: timedelta


async def reserve_credit(
    cmd: ReserveCredit, delivery: Delivery, *, deps: CreditsDeps
) -> ReservationResult:
    """``credit.reserve`` (O2, C4-C6, Q4): at placement, atomically on the account."""

    def decide(account: CreditAccount) -> ReservationResult:
        return account.reserve(
            order_id=cmd.order_id,
            space=cmd.space,
            wanted=cmd.wanted,
            use_credit=cmd.use_credit,
            first_sale_requested=cmd.first_sale_requested,
            now=deps.clock.now(),
            cause=delivery.message_id,
        )

    saved = await deps.store.accounts.mutate(
        cmd.reseller_id, decide, message_id=delivery.message_id, create=CreditAccount.new
    )
    # A replay decided nothing now: the account holds what was decided then.
    return saved.decision or saved.aggregate.reservation_result(cmd.order_id)


async def get_balance(query: GetBalance, _: Delivery, *, deps: CreditsDeps) -> BalanceResult:
    """``credits.balance`` (C2)."""
    return (await deps.store.account(query.reseller_id)).balance(deps.clock.now())


async def get_statement(query: GetStatement, _: Delivery, *, deps: CreditsDeps) -> StatementResult:
    """``credits.statement`` (C3): the entries and whether the balance reconciles."""
    return (await deps.store.account(query.reseller_id)).statement(deps.clock.now())


async def on_order_placed(event: OrderPlaced, delivery: Delivery, *, deps: CreditsDeps) -> None:
    """The line exists: its reservation is confirmed (not an orphan)."""
    saved = await deps.store.accounts.mutate(
        event.reseller_id,
        lambda account: account.confirm(
            event.order_id, deps.clock.now(), cause=delivery.message_id
        ),
        message_id=delivery.message_id,
        digest=delivery.digest,
        create=CreditAccount.new,
    )
    if shortfall := saved.decision:
        metrics.CREDIT_SHORTFALL.inc(shortfall)
        log.error("credit_shortfall", order_id=event.order_id, missing=shortfall)


async def on_proof_accepted(event: ProofAccepted, delivery: Delivery, *, deps: CreditsDeps) -> None:
    """Payment accepted: consume the reservation, grant first-sale credit or credit-note excess."""

    def decide(account: CreditAccount) -> None:
        account.settle_payment(
            order_id=event.order_id,
            space=event.space,
            price=event.price,
            now=deps.clock.now(),
            cause=delivery.message_id,
        )

    await deps.store.accounts.mutate(
        event.reseller_id,
        decide,
        message_id=delivery.message_id,
        digest=delivery.digest,
        create=CreditAccount.new,
    )


async def on_order_ended_unpaid(
    event: OrderCancelled | OrderExpired, delivery: Delivery, *, deps: CreditsDeps
) -> None:
    """``order.cancelled`` / ``order.expired`` (O2, O8): release the reservation."""
    await deps.store.accounts.mutate(
        event.reseller_id,
        lambda account: account.release(
            event.order_id, now=deps.clock.now(), cause=delivery.message_id
        ),
        message_id=delivery.message_id,
        digest=delivery.digest,
        create=CreditAccount.new,
    )


async def run_due(now: datetime, *, deps: CreditsDeps) -> int:
    """One pass of the periodic job: expire lots (C6), release orphaned reservations."""
    due = await deps.store.due(now)
    for reseller_id in due:

        def decide(account: CreditAccount) -> None:
            account.expire_due(now, cause="job:expire")
            account.release_orphans(
                now, older_than=deps.orphan_reservation_delay, cause="job:orphans"
            )

        await deps.store.accounts.mutate(
            reseller_id, decide, message_id=None, create=CreditAccount.new
        )
    return len(due)
