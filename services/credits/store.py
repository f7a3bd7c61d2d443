"""Credits' MongoDB adapter: one ``CreditAccount`` document per reseller."""

from __future__ import annotations

from datetime import datetime

from services.credits.domain import CreditAccount
from shared.basics.errors import Refused
from shared.runtime.store import DocumentStore


def no_unknown_account(reseller_id: str) -> Refused:
    """The accounts store's ``unknown``, never reached: every change creates the account on
    first use (``create=CreditAccount.new``) and queries read an empty one (``account``)."""
    raise AssertionError(f"credits: the account of {reseller_id} is never unknown")


class CreditStore:
    def __init__(self, accounts: DocumentStore[CreditAccount]) -> None:
        self.accounts = accounts

    async def create_indexes(self) -> None:
        await self.accounts.collection.create_index("next_due_at")

    async def account(self, reseller_id: str) -> CreditAccount:
        """The reseller's account; a reseller with no credit history has an empty one."""
        return await self.accounts.get(reseller_id) or CreditAccount.new(reseller_id)

    async def due(self, now: datetime) -> list[str]:
        """Accounts the periodic job must look at (a top-level, indexed date range)."""
        cursor = self.accounts.collection.find({"next_due_at": {"$lte": now}}, {"_id": 1})
        return [str(doc["_id"]) async for doc in cursor]
