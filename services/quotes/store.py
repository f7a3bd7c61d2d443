"""Quotes' MongoDB adapter: quotes (one document each) and the quote-number sequence."""

from __future__ import annotations

from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase

from services.quotes.domain import Quote
from shared.runtime.store import Document, DocumentStore


class QuoteStore:
    def __init__(self, quotes: DocumentStore[Quote], db: AsyncDatabase[Document]) -> None:
        self.quotes = quotes
        self.counters = db["counters"]

    async def create_indexes(self) -> None:
        # One quote per request message: a redelivered quote.request finds its quote.
        await self.quotes.collection.create_index("request_message_id", unique=True)

    async def next_sequence(self, year: int) -> int:
        """Atomic per-year counter (single-document ``$inc`` upsert)."""
        doc = await self.counters.find_one_and_update(
            {"_id": f"quote-{year}"},
            {"$inc": {"value": 1}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        assert doc is not None  # upsert with return_document=AFTER always returns it
        return int(doc["value"])

    async def by_request(self, message_id: str) -> Quote | None:
        doc = await self.quotes.collection.find_one({"request_message_id": message_id})
        return None if doc is None else Quote.model_validate(doc)
