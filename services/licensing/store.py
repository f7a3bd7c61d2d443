"""Licensing's MongoDB adapter: customers (one document per email) and the appliance index.

The index (appliance id -> customer email) exists because the embedded server cannot
query into arrays of subdocuments; it is written before the customer document, so a
crash in between leaves an index entry that points at no appliance (read as
``not_registered``), never an appliance that cannot be found.
"""

from __future__ import annotations

from pymongo.asynchronous.database import AsyncDatabase

from services.licensing.domain import Customer
from shared.store import Document, DocumentStore


class LicensingStore:
    def __init__(self, customers: DocumentStore[Customer], db: AsyncDatabase[Document]) -> None:
        self.customers = customers
        self.appliance_index = db["appliance_index"]

    async def index_appliance(self, appliance_id: str, email: str) -> None:
        await self.appliance_index.replace_one(
            {"_id": appliance_id}, {"_id": appliance_id, "customer_email": email}, upsert=True
        )

    async def customer_of_appliance(self, appliance_id: str) -> Customer | None:
        doc = await self.appliance_index.find_one({"_id": appliance_id})
        return None if doc is None else await self.customers.get(str(doc["customer_email"]))
