"""Credits' MongoDB adapter: one ``CreditAccount`` document per reseller."""

from __future__ import annotations

from services.credits.domain import CreditAccount
from shared.store import DocumentStore


class CreditStore:
    def __init__(self, accounts: DocumentStore[CreditAccount]) -> None:
        self.accounts = accounts

    async def account(self, reseller_id: str) -> CreditAccount:
        """The reseller's account; a reseller with no credit history has an empty one."""
        return await self.accounts.get(reseller_id) or CreditAccount(id=reseller_id)
