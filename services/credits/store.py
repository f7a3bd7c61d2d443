"""Credits' MongoDB adapter: one ``CreditAccount`` document per reseller."""

from __future__ import annotations

from datetime import datetime

from services.credits.domain import CreditAccount
from shared.runtime.store import DocumentStore


class CreditStore:
    def __init__(self, accounts: DocumentStore[CreditAccount]) -> None:
        self.accounts = accounts

    async def create_indexes(self) -> None:
        await self.accounts.collection.create_index("next_due_at")

    async def account(self, reseller_id: str) -> CreditAccount:
        """The reseller's account; a reseller with no credit history has an empty one."""
        return await self.accounts.get(reseller_id) or CreditAccount(id=reseller_id)

    async def due(self, now: datetime) -> list[str]:
        """Accounts the periodic job must look at (a top-level, indexed date range)."""
        cursor = self.accounts.collection.find({"next_due_at": {"$lte": now}}, {"_id": 1})
        return [str(doc["_id"]) async for doc in cursor]
