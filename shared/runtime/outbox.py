"""The outbox relay: publishes the events stored in aggregates' outboxes
(``shared.runtime.store``), each claimed by one relay of N replicas, and removes them
once confirmed (DESIGN.md, Storage)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any, Protocol
from uuid import uuid4

from pydantic import ValidationError
from pymongo import ReplaceOne, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection

from shared.basics.clock import Clock, SystemClock
from shared.basics.errors import Conflict
from shared.runtime import metrics
from shared.runtime.logging import get_logger
from shared.runtime.store import (
    SAVE_ATTEMPTS,
    WRITTEN,
    Aggregate,
    Document,
    OutboxEntry,
    Turn,
    epoch_ms,
)

log = get_logger(__name__)


def _lease(doc: Document) -> int:
    value = doc.get("outbox_claimed_until_ms")
    return int(value) if isinstance(value, int | float) else 0


Publish = Callable[[OutboxEntry], Awaitable[None]]
#: Whether a change of an aggregate is under way in this process (``DocumentStore.changing``).
Changing = Callable[[str], bool]

#: A bound on one pass (the next pass takes the rest).
CANDIDATES_PER_PASS = 1000
#: A document whose publication failed waits this long before another try, doubling per
#: failure up to the last figure (per document: the others go on meanwhile).
RELAY_BACKOFF_SECONDS = (0.5, 10.0)
#: How long a stopping service waits for the publications its last saves handed over.
FINISH_SECONDS = 10.0


def relay_id() -> str:
    """A name for one relay of one process: who holds a claim."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid4().hex[:6]}"


class RelayLog(Protocol):
    """Where a relay reports (its module's logger; tests pass a recorder)."""

    def error(self, event: str, **fields: Any) -> Any: ...

    def info(self, event: str, **fields: Any) -> Any: ...


@dataclass
class RelayPass:
    """What one ``OutboxRelay.drain`` did."""

    published: int = 0
    failed_documents: int = 0
    error: str | None = None

    def failed(self, exc: BaseException) -> None:
        self.failed_documents += 1
        self.error = f"{type(exc).__name__}: {exc}"[:500]


@dataclass(frozen=True, eq=False)
class Unsettled:
    """Entries a save's publication confirmed, still in their document: removed by the
    next save of the aggregate (``OutboxRelay.fold``) or by a settling of many at once."""

    collection: AsyncCollection[Document]
    doc: Document  # as saved, holding this relay's claim
    sent: frozenset[str]
    turn: Turn | None
    changing: Changing | None = None

    @property
    def key(self) -> tuple[str, Any]:
        return (self.collection.full_name, self.doc["_id"])

    def is_changing(self) -> bool:
        return self.changing is not None and self.changing(self.doc["_id"])


class OutboxRelay:
    """Publishes the events stored in aggregates' outboxes, then removes them.

    Publishes the collections it was told to ``watch`` (a service names them in
    ``Wiring.outboxes``), nothing else. Woken right after each save (low latency) and by
    a periodic poll (recovery after a crash between the save and the publish).

    With N replicas, each event is published once: a relay reads the pending documents on
    the indexed top-level ``outbox_pending`` flag, then **claims** each free one with a
    lease (``find_one_and_update`` comparing ``outbox_claimed_until_ms`` as read, setting
    it and ``outbox_claimed_by``, and bumping the version so that a save racing the claim
    reloads it instead of wiping the claim), publishes its entries in order, each
    confirmed, and removes the confirmed ones with the same versioned save the aggregates
    use. A relay that crashes holding a claim is replaced when the lease
    expires, and then its last entries may be published twice: at-least-once stays the
    guarantee, and consumers dedupe by ``message_id`` (= ``event_id``).

    A failure is isolated: the entries confirmed beside it are removed all the same, the
    document waits a back-off of its own (its lease, extended), and the relay goes on with
    the others. An outage is one error line with a count, at most every
    ``error_log_seconds``, not a traceback per pass.

    The removal after a publication at save is not a write of its own: the aggregate's
    next save in this process drops the confirmed entries and releases the claim
    (``fold``), and what no save took within ``settle_seconds`` is removed together,
    one write per collection (``settle_now``). A sale's steps save each order line
    several times in a row, and the store runs one command at a time: a removal each
    was a third of the writes, and it queued before the next step's commands. The cost,
    bounded by ``settle_seconds``: a crash in that window publishes those entries again
    once the claim expires, as a crash between the confirm and the removal always did;
    and another replica's save of the aggregate in that window finds the claim held, so
    its events wait for the removal (whose release wakes a pass).
    """

    def __init__(
        self,
        publish: Publish,
        *,
        clock: Clock | None = None,
        poll_seconds: float = 1.0,
        claim_seconds: float = 30.0,
        concurrency: int = 8,
        error_log_seconds: float = 30.0,
        settle_seconds: float = 0.05,
        name: str | None = None,
        logger: RelayLog | None = None,
    ) -> None:
        self.collections: list[AsyncCollection[Document]] = []
        self.publish = publish
        self.clock: Clock = clock or SystemClock()
        self.poll_seconds = poll_seconds
        self.lease_ms = round(claim_seconds * 1000)
        self.concurrency = max(1, concurrency)
        self.error_log_seconds = error_log_seconds
        self.settle_seconds = settle_seconds
        self.relay_id = name or relay_id()
        self.log: RelayLog = logger or log
        self._wake = asyncio.Event()
        self._last_error_log: float | None = None
        self._failing = False
        self._watched: set[str] = set()
        self._held: set[asyncio.Task[None]] = set()
        self._publishing: set[tuple[str, Any]] = set()  # (collection, id) of those tasks
        self._unsettled: dict[tuple[str, Any], Unsettled] = {}
        self._settling: asyncio.Task[None] | None = None
        self._hurry = asyncio.Event()

    async def watch(self, collections: Sequence[AsyncCollection[Document]]) -> None:
        """Publish these collections' outboxes from now on. Each pass and each save's wake-up
        looks for ``outbox_pending``, so that flag is indexed first (idempotent)."""
        for collection in collections:
            await collection.create_index("outbox_pending")
        self.collections = [*self.collections, *collections]
        self._watched = {collection.full_name for collection in self.collections}

    def hold(self, collection: AsyncCollection[Document], aggregate: Aggregate) -> bool:
        """Put this relay's claim on an aggregate about to be saved with events, if nobody
        holds it (its lease is over): the save itself is then the claim, and the saver
        publishes at once (``publish_held``). False, and the aggregate untouched, when
        there is nothing to publish, the collection is not watched, or a claim is live
        (another relay's, this one's pass, or a back-off after a failed publication):
        those are left to the passes, so that no entry is published by two at once."""
        if not aggregate.outbox or collection.full_name not in self._watched:
            return False
        now = self._now_ms()
        if aggregate.outbox_claimed_until_ms > now:
            return False
        aggregate.outbox_claimed_until_ms = now + self.lease_ms
        aggregate.outbox_claimed_by = self.relay_id
        return True

    def publish_held(
        self,
        collection: AsyncCollection[Document],
        doc: Document,
        *,
        turn: Turn | None = None,
        changing: Changing | None = None,
    ) -> None:
        """Publish the events of a document saved holding this relay's claim (``hold``), as
        saved, then remove them and release the claim: what a pass does after its claim,
        without the read and the claim before it. In a task of its own: the saver answers
        without waiting for the broker's confirm (``finish`` waits for these on stop).

        ``turn``: the saver's own turns on the aggregate (``DocumentStore.mutate``). The
        removal waits for it, so that a change this process is making in the meantime is
        not the one that loses the race: the removal reads the document again instead,
        off the handler's path. ``changing``: whether such a change is under way now; a
        removal of many skips the document then (the change removes it, ``fold``), instead
        of waiting for that turn while holding the others'."""
        key = (collection.full_name, doc["_id"])
        task = asyncio.create_task(self._publish_held(collection, doc, turn, changing))
        self._held.add(task)
        self._publishing.add(key)
        task.add_done_callback(self._held.discard)
        task.add_done_callback(lambda _: self._publishing.discard(key))

    def publishing(self, collection: AsyncCollection[Document], doc_id: Any) -> bool:
        """Whether this process is publishing a save of that document (``publish_held``):
        its published entries are then still to be removed, a new version to come."""
        return (collection.full_name, doc_id) in self._publishing

    async def finish(self) -> None:
        """Let the publications saves handed over end (the service is stopping), for at most
        ``FINISH_SECONDS``, and remove what they confirmed; one cut short is published by a
        pass once its lease expires."""
        await self.sent()
        self._hurry.set()  # the removals waiting for ``settle_seconds`` go now
        if self._settling is not None:
            await self._settling
        self._hurry.clear()

    async def sent(self) -> None:
        """Wait (at most ``FINISH_SECONDS``) until the publications saves handed over are
        confirmed or failed; their removals may still be to come."""
        if self._held:
            await asyncio.wait(self._held, timeout=FINISH_SECONDS)

    def fold(self, collection: AsyncCollection[Document], aggregate: Aggregate) -> Unsettled | None:
        """Before a save of ``aggregate``: drop the entries this relay published and has not
        removed yet, and release its claim, so that this save is their removal (and may
        hold the claim again for its own events). Returns what it folded, for ``folded``
        once the save succeeded; None if there was nothing (or the claim is another's)."""
        record = self._unsettled.get((collection.full_name, aggregate.id))
        if record is None or aggregate.outbox_claimed_by != self.relay_id:
            return None
        aggregate.outbox = [e for e in aggregate.outbox if e.event_id not in record.sent]
        aggregate.outbox_claimed_until_ms = 0
        aggregate.outbox_claimed_by = ""
        aggregate.outbox_failures = 0
        return record

    def folded(self, record: Unsettled) -> None:
        """The save that folded ``record`` succeeded: nothing is left to remove."""
        if self._unsettled.get(record.key) is record:
            del self._unsettled[record.key]
            metrics.OUTBOX_REMOVALS.labels("next_save").inc()

    def _settle_later(self, record: Unsettled) -> None:
        self._unsettled[record.key] = record
        if self._settling is None or self._settling.done():
            self._settling = asyncio.create_task(self._settle_soon())

    async def _settle_soon(self) -> None:
        """Every ``settle_seconds`` (at once when ``finish`` hurries it), remove what is left,
        until nothing is."""
        while self._unsettled:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settle_seconds):
                    await self._hurry.wait()
            await self.settle_now(all_of_them=self._hurry.is_set())

    async def settle_now(self, *, all_of_them: bool = True) -> None:
        """Remove every confirmed entry no save has folded yet: one ``bulk_write`` per
        collection, each document under its saver's turn. Without ``all_of_them``, one
        whose change is under way is left to it (``fold``) or to the next round, instead of
        waiting for its turn while holding the others'. Never raises: a failure leaves
        the claims to expire, and a pass publishes those entries again."""
        records = sorted(
            (r for r in self._unsettled.values() if all_of_them or not r.is_changing()),
            key=lambda r: (r.key[0], str(r.key[1])),
        )
        done = RelayPass()
        async with contextlib.AsyncExitStack() as turns:
            for record in records:
                if record.turn is not None:
                    await turns.enter_async_context(record.turn(record.doc["_id"]))
            records = [r for r in records if self._unsettled.get(r.key) is r]
            for record in records:
                del self._unsettled[record.key]
            for name in dict.fromkeys(r.key[0] for r in records):
                try:
                    await self._settle_together([r for r in records if r.key[0] == name])
                except Exception as exc:  # the store: the claims expire, a pass publishes
                    done.failed(exc)
        await self._report_pass(done)

    async def _settle_together(self, records: list[Unsettled]) -> None:
        """One collection's removals in one write; versioned, as each alone would be. When a
        save came between for some, each document is read again and settled alone."""
        collection = records[0].collection
        updates = [
            ReplaceOne(
                {"_id": r.doc["_id"], "version": r.doc["version"]},
                {**r.doc, **self._released(r.doc, r.sent), "version": r.doc["version"] + 1},
            )
            for r in records
        ]
        result = await collection.bulk_write(updates, ordered=False)
        metrics.OUTBOX_REMOVALS.labels("together").inc(len(records))
        if result.matched_count == len(records):
            for r in records:
                WRITTEN.wrote(collection, r.doc["_id"], r.doc["version"] + 1)
            return
        for r in records:
            current = await collection.find_one({"_id": r.doc["_id"]})
            await self._settle(collection, current, r.sent, failed=False)

    async def _publish_held(
        self,
        collection: AsyncCollection[Document],
        doc: Document,
        turn: Turn | None,
        changing: Changing | None,
    ) -> None:
        """Never raises: the save is done, and a failure leaves the document to the passes
        (after its back-off, or once its lease expires)."""
        done = RelayPass()
        try:
            await self._relay(collection, doc, done, turn, later=True, changing=changing)
        except Exception as exc:  # the store, while settling: the lease expires, a pass retries
            done.failed(exc)
        metrics.EVENTS_PUBLISHED_AT_SAVE.inc(done.published)
        await self._report_pass(done)

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.drain()
            except Exception as exc:  # drain reports its own failures; this is a bug
                self._report(RelayPass(error=f"{type(exc).__name__}: {exc}", failed_documents=1))
            # Not ``asyncio.wait_for``: on Python 3.11 it swallows a cancellation that comes
            # as the wake-up does (it returns the finished wait instead), and the stopping
            # service then waited for this loop forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_seconds):
                    await self._wake.wait()

    async def drain(self) -> int:
        """Claim and publish every pending document no other relay holds; returns how many
        events were published. Failures are counted and reported, never raised."""
        done = RelayPass()
        for collection in self.collections:
            await self._drain(collection, done)
        await self._report_pass(done)
        return done.published

    def _now_ms(self) -> int:
        return epoch_ms(self.clock.now())

    async def candidates(self, collection: AsyncCollection[Document]) -> list[Document]:
        """The pending documents nobody holds: one read on the indexed flag (as cheap as a
        pass that finds nothing), the leases compared here. A free document's lease is 0,
        one saved before leases has none; one held, or backing off, is skipped."""
        now = self._now_ms()
        pending = collection.find(
            {"outbox_pending": True},
            {"_id": 1, "outbox_claimed_until_ms": 1},
            limit=CANDIDATES_PER_PASS,
        )
        return [doc async for doc in pending if _lease(doc) <= now]

    async def claim(
        self, collection: AsyncCollection[Document], candidate: Document | None = None
    ) -> Document | None:
        """Take a candidate (or the first one there is): compare-and-set on its lease as
        read, so of two relays that saw it free only one gets it. Returns the document with
        the new lease, or None when another relay was first.

        The lease is in epoch milliseconds and a free document holds 0, never null nor a
        datetime, and the filter is one plain conjunction: the embedded server stores a
        datetime given to ``$set`` as a string, matches an explicit null unreliably, scans
        every document for ``$or``, and its ``find_one_and_update`` reads
        ``{a, $or: [b, c]}`` as ``(a and b) or c`` (tests/integration/test_store_conformance.py)."""
        if candidate is None:
            for found in await self.candidates(collection):
                first = await self.claim(collection, found)
                if first is not None:
                    return first
            return None
        now = self._now_ms()
        lease = candidate.get("outbox_claimed_until_ms")
        taken: Document | None = await collection.find_one_and_update(
            {
                "_id": candidate["_id"],
                "outbox_pending": True,
                "outbox_claimed_until_ms": {"$exists": False} if lease is None else lease,
            },
            {
                "$set": {
                    "outbox_claimed_until_ms": now + self.lease_ms,
                    "outbox_claimed_by": self.relay_id,
                },
                "$inc": {"version": 1},
            },
            return_document=ReturnDocument.AFTER,
        )
        if taken is not None:
            WRITTEN.wrote(collection, taken["_id"], int(taken.get("version") or 0))
        return taken

    async def _drain(self, collection: AsyncCollection[Document], done: RelayPass) -> None:
        """Claim and publish each candidate, ``concurrency`` at a time; one that another
        relay claimed first is skipped."""
        try:
            candidates = await self.candidates(collection)
        except Exception as exc:
            done.failed(exc)
            return
        if len(candidates) == 1:  # the usual wake-up after a save
            await self._take(collection, candidates[0], done)
            return
        turns = asyncio.Semaphore(self.concurrency)

        async def take(candidate: Document) -> None:
            async with turns:
                await self._take(collection, candidate, done)

        await asyncio.gather(*(take(candidate) for candidate in candidates))

    async def _take(
        self, collection: AsyncCollection[Document], candidate: Document, done: RelayPass
    ) -> None:
        try:
            doc = await self.claim(collection, candidate)
            if doc is None:  # another relay holds it
                return
            if not doc.get("outbox"):  # nothing to publish after all: only release it
                await self._settle(collection, doc, set(), failed=False)
                return
            await self._relay(collection, doc, done)
        except Exception as exc:  # the store: the claim expires, a later pass retries
            done.failed(exc)

    async def _relay(
        self,
        collection: AsyncCollection[Document],
        doc: Document,
        done: RelayPass,
        turn: Turn | None = None,
        *,
        later: bool = False,
        changing: Changing | None = None,
    ) -> None:
        """Publish a claimed document's entries, then remove what was confirmed and release
        the claim (or back off after a failure). ``later``: when all were confirmed, the
        removal is left to the next save or to ``settle_now`` (``_settle_later``).

        All at once: the entries go out in their order on the one confirmed channel (the
        broker receives them in that order), and their confirms are awaited together, so
        that the last entry is not held back by the confirms of the ones before it. Each is
        confirmed on its own: after a failure, the confirmed ones are removed (never
        published again) and the failed ones wait for the document's back-off, so a
        consumer may then see an entry before an earlier one that failed."""
        entries: list[OutboxEntry] = []
        failure: Exception | None = None
        for raw in doc.get("outbox") or []:
            try:
                entries.append(OutboxEntry.model_validate(raw))
            except ValidationError as exc:  # a document written by hand: the others go out
                failure = exc
        outcomes = await asyncio.gather(
            *(self.publish(entry) for entry in entries), return_exceptions=True
        )
        sent = {e.event_id for e, outcome in zip(entries, outcomes, strict=True) if outcome is None}
        for outcome in outcomes:
            if isinstance(outcome, BaseException) and not isinstance(outcome, Exception):
                raise outcome  # cancelled: the lease expires, a pass publishes them
            failure = failure or (outcome if isinstance(outcome, Exception) else None)
        done.published += len(sent)
        if failure is not None:
            done.failed(failure)
        elif later:
            self._settle_later(Unsettled(collection, doc, frozenset(sent), turn, changing))
            return
        async with contextlib.nullcontext() if turn is None else turn(doc["_id"]):
            await self._settle(collection, doc, sent, failed=failure is not None)

    def _backoff_ms(self, failures: int) -> int:
        first, most = RELAY_BACKOFF_SECONDS
        seconds: float = min(first * 2.0 ** max(failures - 1, 0), most)
        return round(seconds * 1000)

    async def _settle(
        self,
        collection: AsyncCollection[Document],
        doc: Document | None,
        sent: AbstractSet[str],
        *,
        failed: bool,
    ) -> None:
        """Remove the published entries with the same versioned save the aggregates use, and
        release the claim, or keep it as this document's back-off after a failure. A claim
        another relay took meanwhile (ours expired) is left to it."""
        current: Document | None = doc
        for _ in range(SAVE_ATTEMPTS):
            if current is None:
                return
            mine = current.get("outbox_claimed_by") == self.relay_id
            if not mine and not any(e["event_id"] in sent for e in current.get("outbox") or []):
                return  # a save removed them (``fold``), and the claim is not ours
            version = current.get("version", 0)
            update = self._released(current, sent, failed=failed)
            result = await collection.replace_one(
                {"_id": current["_id"], "version": version},
                {**current, **update, "version": version + 1},
            )
            if result.matched_count == 1:
                WRITTEN.wrote(collection, current["_id"], version + 1)
                if update["outbox_pending"] and not failed:  # saved meanwhile, behind our claim
                    self.wake()
                return
            current = await collection.find_one({"_id": current["_id"]})  # a save came between
        raise Conflict(f"could not settle the outbox of {None if doc is None else doc['_id']}")

    def _released(self, doc: Document, sent: AbstractSet[str], *, failed: bool = False) -> Document:
        """The fields a removal of ``sent`` sets in ``doc``: the outbox without them, and
        this relay's claim released, or kept as the document's back-off after a failure."""
        remaining = [e for e in doc.get("outbox") or [] if e["event_id"] not in sent]
        update: Document = {"outbox": remaining, "outbox_pending": bool(remaining)}
        if doc.get("outbox_claimed_by") == self.relay_id:
            if failed:
                failures = int(doc.get("outbox_failures") or 0) + 1
                update.update(
                    outbox_failures=failures,
                    outbox_claimed_until_ms=self._now_ms() + self._backoff_ms(failures),
                )
            else:
                update.update(outbox_failures=0, outbox_claimed_until_ms=0, outbox_claimed_by="")
        return update

    async def _report_pass(self, done: RelayPass) -> None:
        if done.error is None:
            if self._failing and done.published:
                self._failing = False
                self.log.info("outbox_publish_recovered", published=done.published)
            return
        self._report(done, pending=await self._pending())

    def _report(self, done: RelayPass, *, pending: int | None = None) -> None:
        """One error line per ``error_log_seconds`` while publishing fails, with counts."""
        self._failing = True
        now = time.monotonic()
        if self._last_error_log is not None and now - self._last_error_log < self.error_log_seconds:
            return
        self._last_error_log = now
        self.log.error(
            "outbox_publish_failed",
            pending=pending,
            failed_documents=done.failed_documents,
            published=done.published,
            error=done.error,
        )

    async def _pending(self) -> int | None:
        """How many documents still have events to publish (None: the store did not say)."""
        try:
            counts = [await c.count_documents({"outbox_pending": True}) for c in self.collections]
        except Exception:
            return None
        return sum(counts)
