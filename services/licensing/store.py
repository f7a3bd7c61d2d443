"""Licensing's MongoDB adapter: customers (one document per email) and the registration
attempt counters.

A licence check finds the customer by the key that prefixes the appliance secret: one
indexed read on a top-level field (the embedded server cannot query into arrays of
subdocuments, so appliances are never looked up inside the customer documents), of the
fields it needs only (``LicenceView``), and at most once per ``LICENSE_CACHE_SECONDS``
per process (``licence_cache``).

Attempt counters are ``shared.runtime.attempts`` (the web faces' sign-in limits use the
same), in the ``registration_attempts`` collection; registration's limits slide, so
each count returns the key's previous window too, in the same command.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase

from services.licensing.domain.customer import Customer
from services.licensing.domain.licence_view import LICENCE_FIELDS, LicenceView
from shared.runtime.attempts import AttemptCounters
from shared.runtime.store import Document, DocumentStore


class LicensingStore:
    def __init__(self, customers: DocumentStore[Customer], db: AsyncDatabase[Document]) -> None:
        self.customers = customers
        self.attempts = AttemptCounters(db["registration_attempts"])

    async def create_indexes(self) -> None:
        await self.customers.collection.create_index([("next_check_at", ASCENDING)])
        await self.customers.collection.create_index([("key", ASCENDING)])
        await self.attempts.create_indexes()

    async def tokens_of(self, email: str) -> Customer | None:
        """Only the registration token digests of ``email`` (L2) are parsed: the check that
        refuses a wrong token parses as little for a customer as for an unknown email. The
        document is read whole (``find_ahead``): within ``reading_ahead``, the save that
        follows the right token takes this read instead of making its own."""
        doc = await self.customers.find_ahead(email)
        return None if doc is None else Customer(id=email, tokens=doc.get("tokens") or [])

    async def licence_view(self, key: str) -> LicenceView | None:
        """What a licence check needs of the customer whose key prefixes an appliance
        secret: one indexed read of the fields it uses (``LICENCE_FIELDS``); the secret
        itself is then checked against the appliance's digest."""
        doc = await self.customers.collection.find_one({"key": key}, LICENCE_FIELDS)
        return None if doc is None else LicenceView.model_validate(doc)

    async def due_for_check(self, now: datetime, *, batch: int = 500) -> AsyncIterator[str]:
        """Emails of customers with a warning, an expiry or a change of edition due by
        ``now``: one indexed range scan on the top-level ``next_check_at``."""
        cursor = (
            self.customers.collection.find({"next_check_at": {"$lte": now}}, {"_id": 1})
            .sort("next_check_at", ASCENDING)
            .limit(batch)
        )
        async for doc in cursor:
            yield str(doc["_id"])
