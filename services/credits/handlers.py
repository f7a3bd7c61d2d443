"""Credits' handlers."""

from __future__ import annotations

from dataclasses import dataclass

from services.credits.store import CreditStore
from shared.clock import Clock
from shared.contracts.credits import BalanceResult, GetBalance
from shared.messaging import Delivery


@dataclass(frozen=True)
class CreditsDeps:
    store: CreditStore
    clock: Clock


async def get_balance(query: GetBalance, _: Delivery, *, deps: CreditsDeps) -> BalanceResult:
    """``credits.balance`` (C2)."""
    account = await deps.store.account(query.reseller_id)
    return account.balance(deps.clock.now())
