"""Licensing's MongoDB adapter: customers (one document per email) and the registration
attempt counters.

A licence check finds the customer by the key that prefixes the appliance secret: one
indexed read on a top-level field (the embedded server cannot query into arrays of
subdocuments, so appliances are never looked up inside the customer documents), of the
fields it needs only (``LicenceView``), and at most once per ``LICENSE_CACHE_SECONDS``
per process (``licence_cache``).

Attempt counters are single documents updated with an atomic ``$inc`` upsert, so every
replica of the service counts against the same number; each expires two windows after
its own (the sliding window reads the previous one) and the purge job deletes it then.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta

from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from services.licensing.domain.customer import Customer
from services.licensing.domain.licence_view import LICENCE_FIELDS, LicenceView
from services.licensing.domain.registration import digest
from shared.basics.attempts import window_index
from shared.runtime.store import Document, DocumentStore


class AttemptCounters:
    """Attempts per key and fixed window: ``{_id: "<key digest>:<window>", count, expires_at}``."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.collection = db["registration_attempts"]

    async def count(self, key: str, *, now: datetime, window: timedelta) -> tuple[int, int]:
        """Count one attempt for ``key`` now; returns (previous window's, this window's)
        counts, this attempt included. Keys are stored as digests: no email in clear."""
        index = window_index(now, window)
        prefix = digest(key)
        expires_at = datetime.fromtimestamp(0, now.tzinfo) + window * (index + 2)
        for _ in range(3):  # two first attempts may race to create the counter
            try:
                current = await self.collection.find_one_and_update(
                    # Equality fields of an upsert's filter are written on insert.
                    {"_id": f"{prefix}:{index}", "expires_at": expires_at},
                    {"$inc": {"count": 1}},
                    upsert=True,
                    return_document=ReturnDocument.AFTER,
                )
                break
            except DuplicateKeyError:
                continue
        else:
            raise RuntimeError(f"could not count an attempt for window {index}")
        previous = await self.collection.find_one({"_id": f"{prefix}:{index - 1}"})
        return (int(previous["count"]) if previous else 0, int(current["count"]) if current else 1)

    async def purge(self, now: datetime) -> int:
        result = await self.collection.delete_many({"expires_at": {"$lte": now}})
        return result.deleted_count


class LicensingStore:
    def __init__(self, customers: DocumentStore[Customer], db: AsyncDatabase[Document]) -> None:
        self.customers = customers
        self.attempts = AttemptCounters(db)

    async def create_indexes(self) -> None:
        await self.customers.collection.create_index([("next_check_at", ASCENDING)])
        await self.customers.collection.create_index([("key", ASCENDING)])
        await self.attempts.collection.create_index([("expires_at", ASCENDING)])

    async def tokens_of(self, email: str) -> Customer | None:
        """Only the registration token digests of ``email`` (L2): the check that refuses
        a wrong token reads and parses as little for a customer as for an unknown email."""
        doc = await self.customers.collection.find_one({"_id": email}, {"tokens": 1})
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
