"""Attempt counters in MongoDB, for every attempt limit (registration, sign-in, password
reset): ``{_id: "<digest of the key>:<window>", count, expires_at}``, one document per
key and fixed window (``shared.basics.attempts``), ``$inc`` upserts so that every replica
counts against the same number; each expires two windows after its own (a sliding
window reads the previous one) and ``purge`` deletes it then. Keys are stored as
digests: no email or address in clear."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from shared.basics.attempts import EPOCH, wait_if_over, window_index

Document = dict[str, Any]


def _key_id(key: str, index: int) -> str:
    return f"{hashlib.sha256(key.encode()).hexdigest()}:{index}"


class AttemptCounters:
    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self.collection = collection

    async def create_indexes(self) -> None:
        await self.collection.create_index([("expires_at", ASCENDING)])

    async def count(self, key: str, *, now: datetime, window: timedelta) -> int:
        """Count one attempt for ``key`` now; returns this window's count, this one included."""
        index = window_index(now, window)
        expires_at = EPOCH + window * (index + 2)
        for _ in range(3):  # two first attempts may race to create the counter
            try:
                current = await self.collection.find_one_and_update(
                    # Equality fields of an upsert's filter are written on insert.
                    {"_id": _key_id(key, index), "expires_at": expires_at},
                    {"$inc": {"count": 1}},
                    upsert=True,
                    return_document=ReturnDocument.AFTER,
                )
                return int(current["count"]) if current else 1
            except DuplicateKeyError:
                continue
        raise RuntimeError(f"could not count an attempt in window {index}")

    async def count_sliding(self, key: str, *, now: datetime, window: timedelta) -> tuple[int, int]:
        """Count one attempt; returns (previous window's, this window's) counts, this
        attempt included: what a sliding-window limit decides on. The count and the read
        of the previous window (which nothing writes any more) go out together."""
        current, previous = await asyncio.gather(
            self.count(key, now=now, window=window),
            self.collection.find_one({"_id": _key_id(key, window_index(now, window) - 1)}),
        )
        return (int(previous["count"]) if previous else 0, current)

    async def wait(self, key: str, *, limit: int, now: datetime, window: timedelta) -> int | None:
        """Count one attempt; ``None`` within ``limit`` (fixed window), else the seconds
        to wait."""
        count = await self.count(key, now=now, window=window)
        return wait_if_over(count, limit=limit, now=now, window=window)

    async def purge(self, now: datetime) -> int:
        result = await self.collection.delete_many({"expires_at": {"$lte": now}})
        return result.deleted_count
