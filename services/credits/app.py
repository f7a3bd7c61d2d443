"""Credits' wiring: its queries, the reservation command, the order events, the job."""

from __future__ import annotations

from datetime import timedelta
from functools import partial

from services.credits import handlers
from services.credits.domain import CreditAccount
from services.credits.store import CreditStore, no_unknown_account
from shared.contracts.credits import GetBalance, GetStatement, ReserveCredit
from shared.contracts.orders import OrderCancelled, OrderExpired, OrderPlaced, ProofAccepted
from shared.runtime.messaging import Route
from shared.runtime.service import Runtime, Wiring


def wire(runtime: Runtime) -> Wiring:
    settings = runtime.settings
    accounts = runtime.store("accounts", CreditAccount, unknown=no_unknown_account)
    store = CreditStore(accounts)
    deps = handlers.CreditsDeps(
        store=store,
        clock=runtime.clock,
        orphan_reservation_delay=timedelta(hours=settings.orphan_reservation_hours),
    )

    ended = partial(handlers.on_order_ended_unpaid, deps=deps)

    async def account_of(message: ReserveCredit) -> None:
        await accounts.read_ahead(message.reseller_id)

    return Wiring(
        routes=[
            Route(
                ReserveCredit, partial(handlers.reserve_credit, deps=deps), read_ahead=account_of
            ),
            Route(GetBalance, partial(handlers.get_balance, deps=deps)),
            Route(GetStatement, partial(handlers.get_statement, deps=deps)),
            # Events change one account, which keeps their ids and digests: no inbox claim.
            Route(OrderPlaced, partial(handlers.on_order_placed, deps=deps), inbox=False),
            Route(ProofAccepted, partial(handlers.on_proof_accepted, deps=deps), inbox=False),
            Route(OrderCancelled, ended, inbox=False),
            Route(OrderExpired, ended, inbox=False),
        ],
        setup=store.create_indexes,
        outboxes=[accounts],
        periodic={"credits_due": partial(handlers.run_due, deps=deps)},
    )
