"""Attempt counters in MongoDB, for every attempt limit (registration, sign-in, password
reset), ``$inc`` upserts so that every replica counts against the same number; windows
are fixed from the epoch (``shared.basics.attempts``). Keys are stored as digests: no
email or address in clear.

- A fixed-window limit (``count``, ``wait``): ``{_id: "<digest>:<window>", count,
  expires_at}``, one document per key and window.
- A sliding-window limit (``count_sliding``, registration) decides on this window's
  count and the previous one's: ``{_id: "<digest>", windows: {"<window>": count},
  expires_ms}``, one document per key, so that one command counts the attempt and
  returns both.

``purge`` deletes a document two windows after its last count."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from shared.basics.attempts import EPOCH, wait_if_over, window_index
from shared.runtime.store import epoch_ms

Document = dict[str, Any]


def sliding_id(key: str) -> str:
    """The document of ``key``'s sliding-window counts."""
    return hashlib.sha256(key.encode()).hexdigest()


def _key_id(key: str, index: int) -> str:
    return f"{sliding_id(key)}:{index}"


class AttemptCounters:
    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self.collection = collection

    async def create_indexes(self) -> None:
        await self.collection.create_index([("expires_at", ASCENDING)])
        await self.collection.create_index([("expires_ms", ASCENDING)])

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
        attempt included: what a sliding-window limit decides on. One store command: this
        window's count goes up, the one before the previous goes, and the document comes
        back with both. Its expiry is epoch milliseconds (the embedded server stores a
        datetime given to ``$set`` as a string)."""
        index = window_index(now, window)
        expires_ms = epoch_ms(EPOCH + window * (index + 2))
        for _ in range(3):  # two first attempts may race to create the document
            try:
                counted = await self.collection.find_one_and_update(
                    {"_id": sliding_id(key)},
                    {
                        "$inc": {f"windows.{index}": 1},
                        "$unset": {f"windows.{index - 2}": ""},
                        "$set": {"expires_ms": expires_ms},
                    },
                    upsert=True,
                    return_document=ReturnDocument.AFTER,
                )
            except DuplicateKeyError:
                continue
            windows = (counted or {}).get("windows") or {}
            return int(windows.get(str(index - 1), 0)), int(windows.get(str(index), 1))
        raise RuntimeError(f"could not count an attempt in window {index}")

    async def wait(self, key: str, *, limit: int, now: datetime, window: timedelta) -> int | None:
        """Count one attempt; ``None`` within ``limit`` (fixed window), else the seconds
        to wait."""
        count = await self.count(key, now=now, window=window)
        return wait_if_over(count, limit=limit, now=now, window=window)

    async def purge(self, now: datetime) -> int:
        fixed = await self.collection.delete_many({"expires_at": {"$lte": now}})
        sliding = await self.collection.delete_many({"expires_ms": {"$lte": epoch_ms(now)}})
        return fixed.deleted_count + sliding.deleted_count
