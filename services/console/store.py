"""The console's MongoDB adapter: the append-only event log, the lines folded from it,
operator accounts (sessions and sign-in limits live in ``shared.runtime.web``)."""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from services.console.domain import (
    STUCK_STATUSES,
    LineState,
    LogEntry,
    Operator,
    fold_line,
)

Document = dict[str, Any]
REVIEW_QUEUE = "review_queue"
REVIEW_VERSION = "review_queue_version"


def review_entry(line: LineState) -> Document:
    """What the review queue shows of a line (``ReviewItem`` without its age)."""
    proof = line.proof
    assert proof is not None
    return {
        "order_id": line.id,
        "reseller_id": line.reseller_id,
        "edition": line.edition,
        "billing": line.billing,
        "amount_due": line.amount_due,
        "currency": line.currency,
        "proof_id": proof.proof_id,
        "sha256": proof.sha256,
        "size": proof.size,
        "content_type": proof.content_type,
        "submitted_at": proof.submitted_at,
        "since": line.status_since,
        "age_seconds": 0,
    }


class ConsoleStore:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.db = db
        self.log = db["event_log"]
        self.lines = db["lines"]
        self.operators = db["operators"]
        # One document lists the lines awaiting review (the review page reads it whole:
        # 1,000 lines in one read instead of 1,000 documents).
        self.summaries = db["summaries"]
        # The summary as this process last read it, with the version it read (a small
        # counter document says when to read the summary again).
        self._review_cache: tuple[int, list[Document]] | None = None

    async def create_indexes(self) -> None:
        for field in ("order_ids", "reseller_id", "customer_email", "correlation_id"):
            await self.log.create_index([(field, ASCENDING), ("occurred_at", ASCENDING)])
        await self.log.create_index([("occurred_at", DESCENDING)])
        await self.log.create_index([("routing_key", ASCENDING), ("occurred_at", DESCENDING)])
        await self.lines.create_index([("status", ASCENDING), ("status_since", ASCENDING)])
        await self.lines.create_index([("reseller_id", ASCENDING), ("placed_at", DESCENDING)])
        await self.lines.create_index([("customer_email", ASCENDING)])

    # --- the event log -------------------------------------------------------------------

    async def append(self, entry: LogEntry) -> bool:
        """Add an entry once: False when its id is already in the log (a redelivery, a replay)."""
        try:
            await self.log.insert_one(entry.model_dump(by_alias=True))
        except DuplicateKeyError:
            return False
        return True

    async def entries(self, query: Document, *, limit: int = 2000) -> list[LogEntry]:
        cursor = self.log.find(query).sort("occurred_at", ASCENDING).limit(limit)
        return [LogEntry.model_validate(doc) async for doc in cursor]

    async def timeline(self, order_id: str) -> list[LogEntry]:
        """Every entry naming the line, and every entry of its workflow (correlation id)."""
        return await self.entries({"$or": [{"order_ids": order_id}, {"correlation_id": order_id}]})

    async def recent(self, limit: int = 100) -> list[LogEntry]:
        cursor = self.log.find({}).sort("occurred_at", DESCENDING).limit(limit)
        return [LogEntry.model_validate(doc) async for doc in cursor]

    async def count(self) -> int:
        return await self.log.count_documents({})

    # --- lines folded from the log --------------------------------------------------------

    async def refresh_line(self, order_id: str) -> LineState | None:
        """Fold the line from its entries and keep the result, unless a fold of more
        entries was kept meanwhile (the log only grows, so more entries is newer)."""
        entries = await self.entries({"order_ids": order_id}, limit=10_000)
        line = fold_line(order_id, entries)
        if line is None:
            return None
        doc = line.model_dump(by_alias=True)
        with contextlib.suppress(DuplicateKeyError):  # a fold of more entries is there
            await self.lines.replace_one(
                {"_id": order_id, "events": {"$lte": line.events}}, doc, upsert=True
            )
        await self.note_review(line)
        return line

    async def note_review(self, line: LineState) -> None:
        """Keep the review summary in step with the line: an entry while its proof awaits
        review, a tombstone after; a fold of fewer entries never overwrites a newer one."""
        key = f"lines.{line.id.replace('.', '_')}"
        newer_or_equal = {f"{key}.events": {"$lte": line.events}}
        if line.status == "proof_submitted" and line.proof is not None:
            entry = {
                **review_entry(line),
                "events": line.events,
                "waiting": True,
            }
            query = {"_id": REVIEW_QUEUE, "$or": [{key: {"$exists": False}}, newer_or_equal]}
            try:
                result = await self.summaries.update_one(query, {"$set": {key: entry}}, upsert=True)
            except DuplicateKeyError:  # a newer entry is already there
                return
        else:
            tombstone = {"events": line.events, "waiting": False, "since": line.status_since}
            result = await self.summaries.update_one(
                {"_id": REVIEW_QUEUE, **newer_or_equal}, {"$set": {key: tombstone}}
            )
        if result.modified_count or result.upserted_id is not None:
            await self._changed()

    async def _changed(self) -> None:
        """Tell every process the summary changed (after the change: a reader that sees the
        new number reads a summary at least that new)."""
        await self.summaries.update_one({"_id": REVIEW_VERSION}, {"$inc": {"n": 1}}, upsert=True)

    async def awaiting_review(self, limit: int = 5000) -> list[Document]:
        """Lines whose proof awaits review, oldest first (from the one summary document):
        ``ReviewItem`` fields, as plain dicts (the page lists a thousand of them)."""
        counter = await self.summaries.find_one({"_id": REVIEW_VERSION})
        version = int((counter or {}).get("n", 0))
        if self._review_cache is None or self._review_cache[0] != version:
            doc = await self.summaries.find_one({"_id": REVIEW_QUEUE})
            entries = [e for e in ((doc or {}).get("lines") or {}).values() if e.get("waiting")]
            entries.sort(key=lambda e: e["since"])
            self._review_cache = (version, entries)
        return [dict(e) for e in self._review_cache[1][:limit]]

    async def compact_review(self, before: datetime) -> int:
        """Drop tombstones older than ``before`` (unless the line changed meanwhile)."""
        doc = await self.summaries.find_one({"_id": REVIEW_QUEUE})
        dropped = 0
        for key, entry in ((doc or {}).get("lines") or {}).items():
            if not entry.get("waiting") and entry["since"] < before:
                result = await self.summaries.update_one(
                    {
                        "_id": REVIEW_QUEUE,
                        f"lines.{key}.events": entry["events"],
                        f"lines.{key}.waiting": False,
                    },
                    {"$unset": {f"lines.{key}": ""}},
                )
                dropped += result.modified_count
        if dropped:
            await self._changed()
        return dropped

    async def line(self, order_id: str) -> LineState | None:
        doc = await self.lines.find_one({"_id": order_id})
        return None if doc is None else LineState.model_validate(doc)

    async def stuck_candidates(self, before: datetime) -> list[LineState]:
        """Lines in a status that can be stuck and unchanged since ``before``."""
        cursor = self.lines.find(
            {"status": {"$in": list(STUCK_STATUSES)}, "status_since": {"$lte": before}}
        ).sort("status_since", ASCENDING)
        return [LineState.model_validate(doc) async for doc in cursor]

    async def lines_of(
        self, *, reseller_id: str | None = None, email: str | None = None
    ) -> list[LineState]:
        query: Document = {}
        if reseller_id is not None:
            query["reseller_id"] = reseller_id
        if email is not None:
            query["customer_email"] = email
        cursor = self.lines.find(query).sort("placed_at", DESCENDING).limit(500)
        return [LineState.model_validate(doc) async for doc in cursor]

    async def resellers(self) -> list[str]:
        return sorted(str(r) for r in await self.lines.distinct("reseller_id") if r)

    # --- operators ----------------------------------------------------------------------

    async def add_operator(self, operator: Operator) -> bool:
        try:
            await self.operators.insert_one(operator.model_dump(by_alias=True))
        except DuplicateKeyError:
            return False
        return True

    async def set_password(self, email: str, password_hash: str) -> bool:
        result = await self.operators.update_one(
            {"_id": email}, {"$set": {"password_hash": password_hash}}
        )
        return result.matched_count == 1

    async def operator(self, email: str) -> Operator | None:
        doc = await self.operators.find_one({"_id": email})
        return None if doc is None else Operator.model_validate(doc)
