"""The console's MongoDB adapter: the append-only event log, the lines folded from it,
operator accounts (sessions and sign-in limits live in ``shared.runtime.web``)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from services.console.domain import (
    STUCK_STATUSES,
    LineState,
    LogEntry,
    Operator,
    fold_line,
)

Document = dict[str, Any]


#: What the review queue reads of a line document.
REVIEW_FIELDS = {
    field: 1
    for field in (
        "reseller_id",
        "edition",
        "billing",
        "amount_due",
        "currency",
        "proof",
        "status_since",
    )
}


def review_entry(doc: Document) -> Document:
    """What the review queue shows of a line's document (``ReviewItem`` without its age):
    read as stored, a thousand at a time, without building each ``LineState``."""
    proof = doc["proof"]
    return {
        "order_id": doc["_id"],
        "reseller_id": doc.get("reseller_id"),
        "edition": doc.get("edition"),
        "billing": doc.get("billing"),
        "amount_due": doc.get("amount_due"),
        "currency": doc.get("currency", "EUR"),
        "proof_id": proof["proof_id"],
        "sha256": proof["sha256"],
        "size": proof["size"],
        "content_type": proof["content_type"],
        "submitted_at": proof["submitted_at"],
        "since": doc["status_since"],
        "age_seconds": 0,
    }


#: Entries written by one group commit at most (``ConsoleStore.record``).
GROUP_COMMIT_MAX = 200

#: Log entries copied per batch when an old log gets its line copies.
COPY_BATCH = 500

#: The server's code for a duplicate key.
DUPLICATE_KEY = 11000


async def insert_new(collection: AsyncCollection[Document], docs: Sequence[Document]) -> set[int]:
    """Insert ``docs`` in one unordered command; returns the positions of those whose id
    was already there (a redelivery), the rest being inserted. Any other error raises."""
    if not docs:
        return set()
    try:
        await collection.insert_many(docs, ordered=False)
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors") or []
        if exc.details.get("writeConcernErrors") or any(
            error.get("code") != DUPLICATE_KEY for error in errors
        ):
            raise
        return {int(error["index"]) for error in errors}
    return set()


@dataclass(frozen=True)
class Appended:
    """What appending an entry did: ``new``; or its id was logged already, for the same
    event (a redelivery, a replay), or for another one: ``reused_by`` names the routing key
    logged with that id, and nothing of this entry was written."""

    new: bool
    reused_by: str | None = None


#: Marks that every entry of the log has its copies in ``line_entries`` (a log kept
#: before that collection existed is copied once, at start).
LINE_ENTRIES_READY = "line_entries_ready"


class ConsoleStore:
    """Indexes are single-field: the embedded store (nx-27017) uses no compound index, and
    an index on an array field breaks its equality match on that array (nothing matches).
    So a line's entries are found through ``line_entries``, one copy of each entry per
    line it names, keyed by the scalar ``line``: folding a line reads its own entries, not
    the whole log."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.db = db
        self.log = db["event_log"]
        self.line_entries = db["line_entries"]
        self.lines = db["lines"]
        self.operators = db["operators"]
        self.summaries = db["summaries"]  # markers (``LINE_ENTRIES_READY``)
        self._waiting: list[tuple[LogEntry, asyncio.Future[Appended]]] = []
        self._committing: asyncio.Task[None] | None = None

    async def create_indexes(self) -> None:
        for field in ("reseller_id", "customer_email", "correlation_id"):
            await self.log.create_index([(field, ASCENDING)])
        await self.log.create_index([("occurred_at", DESCENDING)])
        await self.line_entries.create_index([("line", ASCENDING)])
        await self.lines.create_index([("status", ASCENDING)])
        await self.lines.create_index([("reseller_id", ASCENDING)])
        await self.lines.create_index([("customer_email", ASCENDING)])
        await self._copy_log_to_lines()

    async def _copy_log_to_lines(self) -> None:
        """Give every entry of a log kept before ``line_entries`` its line copies (once;
        an interrupted copy starts again, and copies are keyed, so never doubled)."""
        if await self.summaries.find_one({"_id": LINE_ENTRIES_READY}) is not None:
            return
        batch: list[Document] = []
        async for doc in self.log.find({}):
            batch.append(doc)
            if len(batch) == COPY_BATCH:
                await insert_new(self.line_entries, _line_copies(batch))
                batch = []
        await insert_new(self.line_entries, _line_copies(batch))
        await self.summaries.update_one(
            {"_id": LINE_ENTRIES_READY}, {"$set": {"at": datetime.now(UTC)}}, upsert=True
        )

    # --- the event log -------------------------------------------------------------------

    async def record(self, entry: LogEntry) -> Appended:
        """Append an event's entry and refold the lines it names, as a group commit.

        The console hears every event of every sale: one entry at a time took five store
        commands each. Entries that arrive while a commit is under way wait for the next
        one, which writes them all: the log's insert, the line copies' insert, then one
        fold per line named, however many entries name it. Each caller returns once its
        entry is written (its delivery is acked after that); a failed commit fails every
        entry in it, and each is retried as its delivery."""
        written: asyncio.Future[Appended] = asyncio.get_running_loop().create_future()
        self._waiting.append((entry, written))
        if self._committing is None:
            self._committing = asyncio.create_task(self._commit_waiting())
        return await written

    async def _commit_waiting(self) -> None:
        try:
            while self._waiting:
                group = self._waiting[:GROUP_COMMIT_MAX]
                del self._waiting[:GROUP_COMMIT_MAX]
                await self._commit(group)
        finally:
            self._committing = None

    async def _commit(self, group: list[tuple[LogEntry, asyncio.Future[Appended]]]) -> None:
        """Write one group and fold each line it names once; tell every waiter how."""
        entries = [entry for entry, _ in group]
        try:
            outcomes = await self.append_all(entries)
            named = dict.fromkeys(
                line
                for entry, outcome in zip(entries, outcomes, strict=True)
                if outcome.reused_by is None
                for line in entry.order_ids
            )
            for order_id in named:
                await self.refresh_line(order_id)
        except Exception as exc:
            for _, waiter in group:
                if not waiter.done():
                    waiter.set_exception(exc)
            return
        for (_, waiter), outcome in zip(group, outcomes, strict=True):
            if not waiter.done():
                waiter.set_result(outcome)

    async def append(self, entry: LogEntry) -> bool:
        """Add an entry once: False when its id is already in the log (a redelivery, a replay)."""
        return (await self.append_all([entry]))[0].new

    async def append_all(self, entries: Sequence[LogEntry]) -> list[Appended]:
        """Add entries once each, in two store commands: the log's, then the line copies'
        (and a read when an id was logged already). An entry whose id was logged for the
        same event still gets its line copies (a redelivery after a crash between the
        two); one whose id was logged for another event gets nothing."""
        docs = [entry.model_dump(by_alias=True) for entry in entries]
        again = await insert_new(self.log, docs)
        reused = await self._reused(entries, again)
        kept = [doc for n, doc in enumerate(docs) if n not in reused]
        await insert_new(self.line_entries, _line_copies(kept))
        return [Appended(new=n not in again, reused_by=reused.get(n)) for n in range(len(entries))]

    async def _reused(self, entries: Sequence[LogEntry], again: set[int]) -> dict[int, str]:
        """Of the entries whose id was logged already, those logged for another event
        (another routing key or body), with the routing key logged."""
        if not again:
            return {}
        ids = list({entries[n].id for n in again})
        logged = {doc["_id"]: doc async for doc in self.log.find({"_id": {"$in": ids}})}
        reused = {}
        for n in again:
            earlier = logged.get(entries[n].id) or {}
            if (earlier.get("routing_key"), earlier.get("body")) != (
                entries[n].routing_key,
                entries[n].body,
            ):
                reused[n] = str(earlier.get("routing_key") or "unknown")
        return reused

    async def entries(self, query: Document, *, limit: int = 2000) -> list[LogEntry]:
        cursor = self.log.find(query).sort("occurred_at", ASCENDING).limit(limit)
        return [LogEntry.model_validate(doc) async for doc in cursor]

    async def line_log(self, order_id: str, *, limit: int = 10_000) -> list[LogEntry]:
        """The entries naming the line, oldest first (its copies in ``line_entries``)."""
        cursor = self.line_entries.find({"line": order_id}).limit(limit)
        entries = [LogEntry.model_validate({**doc, "_id": doc["entry_id"]}) async for doc in cursor]
        return sorted(entries, key=lambda entry: entry.occurred_at)

    async def timeline(self, order_id: str) -> list[LogEntry]:
        """Every entry naming the line, and every entry of its workflow (correlation id)."""
        named = await self.line_log(order_id, limit=2000)
        workflow = await self.entries({"correlation_id": order_id})
        merged = {entry.id: entry for entry in [*named, *workflow]}
        return sorted(merged.values(), key=lambda entry: entry.occurred_at)[:2000]

    async def recent(self, limit: int = 100) -> list[LogEntry]:
        cursor = self.log.find({}).sort("occurred_at", DESCENDING).limit(limit)
        return [LogEntry.model_validate(doc) async for doc in cursor]

    async def count(self) -> int:
        return await self.log.count_documents({})

    # --- lines folded from the log --------------------------------------------------------

    async def refresh_line(self, order_id: str) -> LineState | None:
        """Fold the line from its entries and keep the result, unless a fold of more
        entries was kept meanwhile (the log only grows, so more entries is newer)."""
        line = fold_line(order_id, await self.line_log(order_id))
        if line is None:
            return None
        doc = line.model_dump(by_alias=True)
        with contextlib.suppress(DuplicateKeyError):  # a fold of more entries is there
            await self.lines.replace_one(
                {"_id": order_id, "events": {"$lte": line.events}}, doc, upsert=True
            )
        return line

    async def awaiting_review(self, limit: int = 5000) -> list[Document]:
        """Lines whose proof awaits review, oldest first: ``ReviewItem`` fields, as plain
        dicts (the page lists a thousand of them). One indexed read of the lines in that
        status: nothing is kept up to date per event for it."""
        cursor = self.lines.find({"status": "proof_submitted"}, REVIEW_FIELDS)
        entries = [review_entry(doc) async for doc in cursor if doc.get("proof")]
        entries.sort(key=lambda entry: entry["since"])
        return entries[:limit]

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


def _line_copies(docs: Sequence[Document]) -> list[Document]:
    """A copy of each log document (as written to the log) per line it names, keyed by
    line and entry (``line_entries``)."""
    return [
        {**doc, "_id": f"{line} {doc['_id']}", "entry_id": doc["_id"], "line": line}
        for doc in docs
        for line in doc.get("order_ids") or []
    ]
