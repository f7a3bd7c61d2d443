"""Credits' wiring."""

from __future__ import annotations

from functools import partial

from services.credits import handlers
from services.credits.domain import CreditAccount
from services.credits.store import CreditStore
from shared.contracts.credits import GetBalance
from shared.messaging import Route
from shared.service import Runtime, Wiring


def wire(runtime: Runtime) -> Wiring:
    store = CreditStore(runtime.store("accounts", CreditAccount))
    deps = handlers.CreditsDeps(store=store, clock=runtime.clock)
    return Wiring(routes=[Route(GetBalance, partial(handlers.get_balance, deps=deps))])
