"""MongoDB storage patterns every service uses (DESIGN.md, Storage).

- One aggregate = one document, saved whole with an optimistic version check.
- The events a change produces travel **in the same document save** (``outbox``);
  the ``OutboxRelay`` claims the document (a lease, so that of N replicas one publishes
  it), publishes them with publisher confirms, then removes them. The claim usually
  travels in that save too, and the saving process publishes at once; the relay's
  passes publish what a crash, a failure or another replica's claim left.
- ``applied_messages`` inside the aggregate makes a state change and the record
  that it was applied one atomic write: a redelivered command changes nothing twice.
- The inbox (``shared.runtime.inbox``) binds each message id to its request and keeps
  the reply, so a resent request gets the same answer.
- A handler's aggregate may be **read ahead**, beside the inbox's claim instead of after
  it (``Route.read_ahead``, ``DocumentStore.read_ahead``): the handler still runs only
  once the claim is settled, and its first load is served from that read unless this
  process wrote the document since (``WrittenVersions``).

Only single-document operations are used: the embedded server does not isolate
multi-document transactions, and production must not need them either.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from collections.abc import Set as AbstractSet
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Protocol, Self, TypeVar
from uuid import uuid4

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pymongo import AsyncMongoClient, ReplaceOne, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from shared.basics.clock import Clock, SystemClock
from shared.basics.errors import Conflict, Refused
from shared.contracts import REGISTRY, Event
from shared.runtime import metrics
from shared.runtime.inbox import MessageIdReused
from shared.runtime.logging import get_logger

Document = dict[str, Any]
E = TypeVar("E", bound=Event)
log = get_logger(__name__)

APPLIED_MESSAGES_KEPT = 200
SAVE_ATTEMPTS = 100


def connect(url: str) -> AsyncMongoClient[Document]:
    """A client that returns aware UTC datetimes."""
    return AsyncMongoClient(
        url, tz_aware=True, serverSelectionTimeoutMS=5000, connectTimeoutMS=5000
    )


def database(
    client: AsyncMongoClient[Document], prefix: str, service: str
) -> AsyncDatabase[Document]:
    """One database per service: a service never reads another's data."""
    return client[f"{prefix}{service}"]


class OutboxEntry(BaseModel):
    """An event waiting to be published, stored inside its aggregate's document."""

    event_id: str
    routing_key: str
    body: str = Field(description="The event's JSON body, exactly as it will be published.")
    correlation_id: str | None
    occurred_at: datetime

    def event(self) -> Event:
        model = REGISTRY[self.routing_key]
        parsed = model.model_validate_json(self.body)
        assert isinstance(parsed, Event)
        return parsed


class Aggregate(BaseModel):
    """Base of every aggregate: identity, version, outbox, applied message ids."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore", validate_assignment=False)

    id: str = Field(alias="_id")
    version: int = 0
    outbox: list[OutboxEntry] = Field(default_factory=list)
    applied_messages: list[str] = Field(default_factory=list)
    # The digest of each applied message that came with one (``Delivery.digest``), by id:
    # what refuses an id reused for another message, for routes without an inbox.
    applied_digests: dict[str, str] = Field(default_factory=dict)
    # The outbox relay's bookkeeping (``OutboxRelay``), never set by the domain: until when
    # (epoch milliseconds; 0: nobody) which relay holds the document, and how many passes
    # in a row failed. Carried through every load and save, so that a save never takes a
    # claim away.
    outbox_claimed_until_ms: int = 0
    outbox_claimed_by: str = ""
    outbox_failures: int = 0

    @classmethod
    def new(cls, aggregate_id: str) -> Self:
        """A new, empty aggregate (``DocumentStore.mutate``'s ``create`` for kinds made on
        first use, like a reseller's credit account or a customer)."""
        return cls(id=aggregate_id)

    def event_ids(self) -> dict[str, Any]:
        """The ids every event of this aggregate carries (``order_id``, ``reseller_id``,
        ``customer_email``, the workflow's ``correlation_id``...): each aggregate says its own.
        An event that has no such field ignores it."""
        return {}

    def record(self, event_type: type[E], *, at: datetime, **fields: Any) -> E:
        """Record a fact; it is published after the save that stores it.

        The one way events are built: ``event_ids()``, ``occurred_at=at``, then ``fields``
        (which may override an id, e.g. the correlation id of another workflow)."""
        event = event_type(**{**self.event_ids(), "occurred_at": at, **fields})
        self.outbox.append(
            OutboxEntry(
                event_id=str(uuid4()),
                routing_key=event.ROUTING_KEY,
                body=event.model_dump_json(),
                correlation_id=event.correlation_id,
                occurred_at=event.occurred_at,
            )
        )
        return event

    def recorded(self) -> list[Event]:
        """The events not yet published (domain tests read them here)."""
        return [entry.event() for entry in self.outbox]

    def has_applied(self, message_id: str | None, digest: str | None = None) -> bool:
        """Whether this message was applied already (a resend: nothing to do again).
        ``MessageIdReused`` if its id was applied with another digest (another message)."""
        if message_id is None or message_id not in self.applied_messages:
            return False
        earlier = self.applied_digests.get(message_id)
        if digest is not None and earlier is not None and earlier != digest:
            raise MessageIdReused(
                f"message_id {message_id} was already applied to {self.id} for another "
                "message; use a new id for a new message"
            )
        return True

    def mark_applied(self, message_id: str | None, digest: str | None = None) -> None:
        if message_id is None:
            return
        self.applied_messages = [*self.applied_messages, message_id][-APPLIED_MESSAGES_KEPT:]
        digests = self.applied_digests | ({} if digest is None else {message_id: digest})
        if digests:  # only the ids still kept keep their digests
            kept = set(self.applied_messages)
            self.applied_digests = {m: d for m, d in digests.items() if m in kept}

    def to_document(self) -> Document:
        doc = self.model_dump(by_alias=True, mode="python")
        doc["outbox_pending"] = bool(self.outbox)
        return doc


def _lease(doc: Document) -> int:
    value = doc.get("outbox_claimed_until_ms")
    return int(value) if isinstance(value, int | float) else 0


def epoch_ms(moment: datetime) -> int:
    """Milliseconds since the epoch: how the relay's leases and the sliding attempt
    counters' expiries (``shared.runtime.attempts``) are stored and compared."""
    return int(moment.timestamp() * 1000)


A = TypeVar("A", bound=Aggregate)
T = TypeVar("T")
Unknown = Callable[[str], Refused]
#: One aggregate's turn among this process's changes of it (``DocumentStore._turn``).
Turn = Callable[[str], contextlib.AbstractAsyncContextManager[None]]


@dataclass(frozen=True)
class Saved(Generic[A, T]):
    """What ``DocumentStore.mutate`` did: the aggregate as saved, and what the change decided
    (``decide``'s return value; ``None`` when the message had been applied before)."""

    aggregate: A
    decision: T | None
    replayed: bool = False


#: How many documents ``WrittenVersions`` remembers: far more than are in flight at once.
WRITTEN_VERSIONS_KEPT = 4096


class WrittenVersions:
    """The version this process last wrote of each recently written document (saves, the
    relay's claims and settles), by collection and id: what tells a document read ahead
    that it is already old. Bounded (least recently written first out); a document
    forgotten here and read ahead stale only costs its save a ``Conflict`` and a reload,
    as any lost race does."""

    def __init__(self, kept: int = WRITTEN_VERSIONS_KEPT) -> None:
        self.kept = kept
        self._versions: OrderedDict[tuple[str, Any], int] = OrderedDict()

    def wrote(self, collection: AsyncCollection[Document], doc_id: Any, version: int) -> None:
        key = (collection.full_name, doc_id)
        self._versions[key] = max(version, self._versions.get(key, 0))
        self._versions.move_to_end(key)
        while len(self._versions) > self.kept:
            self._versions.popitem(last=False)

    def newer_than(
        self, collection: AsyncCollection[Document], doc_id: Any, doc: Document | None
    ) -> bool:
        """Whether this process wrote the document after ``doc`` (None: absent) was read."""
        written = self._versions.get((collection.full_name, doc_id))
        if written is None:
            return False
        return doc is None or int(doc.get("version") or 0) < written


WRITTEN = WrittenVersions()

#: The documents read ahead for the message being handled, by collection and id (None:
#: read and absent); set by ``reading_ahead`` around one delivery.
_READ_AHEAD: ContextVar[dict[tuple[str, str], Document | None] | None] = ContextVar(
    "read_ahead", default=None
)


@contextlib.contextmanager
def reading_ahead() -> Iterator[None]:
    """Around one delivery: what ``DocumentStore.read_ahead`` reads in it serves the
    handler's first load, and nothing outlives the delivery."""
    token = _READ_AHEAD.set({})
    try:
        yield
    finally:
        _READ_AHEAD.reset(token)


class DocumentStore(Generic[A]):
    """Load and save one kind of aggregate with optimistic concurrency.

    ``unknown`` is the refusal for an id that names nothing (``unknown_order``...): each
    store says it once, instead of every handler.

    With a ``relay``, a save that stores events publishes them itself, at once: the save
    carries the relay's claim (``OutboxRelay.hold``), so no other relay takes the
    document, and no pass has to find and claim it first (``OutboxRelay.publish_held``).
    A document another relay holds is saved without a claim and left to the relays."""

    def __init__(
        self,
        collection: AsyncCollection[Document],
        model: type[A],
        *,
        unknown: Unknown,
        relay: OutboxRelay | None = None,
    ) -> None:
        self.collection = collection
        self.model = model
        self.unknown = unknown
        self.relay = relay
        self._writing: dict[str, tuple[asyncio.Lock, int]] = {}  # aggregate id -> (lock, users)
        self._changed: list[Callable[[A], None]] = []

    def on_change(self, listener: Callable[[A], None]) -> None:
        """Call ``listener`` with each aggregate ``mutate`` saved in this process, once it
        is saved: a read cache of the same process forgets it at once (licensing's licence
        check). Other processes' saves are not seen here: such a cache bounds its age."""
        self._changed.append(listener)

    async def read_ahead(self, aggregate_id: str) -> None:
        """Read the aggregate now, beside the inbox's claim (``Route.read_ahead``), for the
        handler's first ``get`` (``find_ahead``). Not while this process is changing the
        aggregate, or publishing what it saved last: the read would be old by the
        handler's turn (many reservations on one credit account, a command that follows at
        once the event of the step before), one store command for nothing. Once the
        publication is confirmed, the removal of its entries waits for the next save
        (``OutboxRelay.fold``), so the read stays good."""
        if aggregate_id not in self._writing and not (
            self.relay is not None and self.relay.publishing(self.collection, aggregate_id)
        ):
            await self.find_ahead(aggregate_id)

    async def find_ahead(self, aggregate_id: str) -> Document | None:
        """The aggregate's document, read now (None: there is none). Within
        ``reading_ahead``, the first ``get`` of it takes this read instead of making its
        own, one store round trip later, unless this process changed it since."""
        doc = await self.collection.find_one({"_id": aggregate_id})
        kept = _READ_AHEAD.get()
        if kept is not None and aggregate_id not in self._writing:
            kept[(self.collection.full_name, aggregate_id)] = doc
        return doc

    async def load_ahead(self, aggregate_id: str) -> A:
        """``load``, with the read kept as ``find_ahead`` keeps it: a check made before a
        long step (an upload's body is read) and the change after it share one read, unless
        this process changed the aggregate meanwhile. Within ``reading_ahead`` only."""
        doc = await self.find_ahead(aggregate_id)
        if doc is None:
            raise self.unknown(aggregate_id)
        return self.model.model_validate(doc)

    async def get(self, aggregate_id: str) -> A | None:
        kept = _READ_AHEAD.get()
        key = (self.collection.full_name, aggregate_id)
        if kept is not None and key in kept:
            doc = kept.pop(key)  # served once: a reload after a Conflict reads afresh
            if WRITTEN.newer_than(self.collection, aggregate_id, doc):
                doc = await self.collection.find_one({"_id": aggregate_id})
        else:
            doc = await self.collection.find_one({"_id": aggregate_id})
        return None if doc is None else self.model.model_validate(doc)

    async def load(self, aggregate_id: str) -> A:
        """The aggregate, or this store's ``unknown`` refusal."""
        aggregate = await self.get(aggregate_id)
        if aggregate is None:
            raise self.unknown(aggregate_id)
        return aggregate

    async def insert(self, aggregate: A) -> bool:
        """Store a new aggregate; False if one with that id exists (the create was a replay)."""
        aggregate.version = 1
        held = self._hold(aggregate)
        doc = aggregate.to_document()
        try:
            await self.collection.insert_one(doc)
        except DuplicateKeyError:
            return False
        WRITTEN.wrote(self.collection, aggregate.id, 1)
        self._publish(doc, held)
        return True

    async def save(self, aggregate: A) -> None:
        """Replace the document if nobody saved it since we loaded it; else ``Conflict``."""
        expected = aggregate.version
        folded = None if self.relay is None else self.relay.fold(self.collection, aggregate)
        held = self._hold(aggregate)
        doc = aggregate.to_document()
        doc["version"] = expected + 1
        result = await self.collection.replace_one({"_id": aggregate.id, "version": expected}, doc)
        if result.matched_count != 1:
            raise Conflict(f"{self.model.__name__} {aggregate.id} changed since version {expected}")
        aggregate.version = expected + 1
        WRITTEN.wrote(self.collection, aggregate.id, aggregate.version)
        if folded is not None and self.relay is not None:
            self.relay.folded(folded)
        self._publish(doc, held)

    def _hold(self, aggregate: A) -> bool:
        return self.relay is not None and self.relay.hold(self.collection, aggregate)

    def _publish(self, doc: Document, held: bool) -> None:
        """After a save of ``doc`` (as written): publish its events now if the save held the
        claim, else wake the relay (a claim was live; whoever holds it wakes the relay when
        it lets go)."""
        if self.relay is None:
            return
        if held:
            self.relay.publish_held(self.collection, doc, turn=self._turn)
        elif doc["outbox"]:
            self.relay.wake()

    async def mutate(
        self,
        aggregate_id: str,
        decide: Callable[[A], T],
        *,
        message_id: str | None,
        digest: str | None = None,
        create: Callable[[str], A] | None = None,
    ) -> Saved[A, T]:
        """Load, let the domain decide, save; on a lost race reload and decide again.

        The one load-change-save of every handler. A missing aggregate is built by
        ``create`` (which may also raise a refusal of its own) or refused with this store's
        ``unknown``. A message already applied to this aggregate is not applied again; with
        its ``digest`` (``Delivery.digest``, for a route without inbox), the aggregate keeps
        it, and the same id with another digest is refused (``MessageIdReused``).

        Changes of one aggregate in one process take turns (many messages for one credit
        account arrive together, now that calls run concurrently): the version check only
        has to settle races with other processes and the outbox relay.
        """
        async with self._turn(aggregate_id):
            return await self._mutate(
                aggregate_id, decide, message_id=message_id, digest=digest, create=create
            )

    @contextlib.asynccontextmanager
    async def _turn(self, aggregate_id: str) -> AsyncIterator[None]:
        lock, users = self._writing.get(aggregate_id, (asyncio.Lock(), 0))
        self._writing[aggregate_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._writing[aggregate_id]
            if users == 1:
                del self._writing[aggregate_id]
            else:
                self._writing[aggregate_id] = (lock, users - 1)

    async def _mutate(
        self,
        aggregate_id: str,
        decide: Callable[[A], T],
        *,
        message_id: str | None,
        digest: str | None,
        create: Callable[[str], A] | None,
    ) -> Saved[A, T]:
        for attempt in range(SAVE_ATTEMPTS):
            aggregate = await self.get(aggregate_id)
            is_new = aggregate is None
            if aggregate is None:
                if create is None:
                    raise self.unknown(aggregate_id)
                aggregate = create(aggregate_id)
            if aggregate.has_applied(message_id, digest):
                return Saved(aggregate, None, replayed=True)
            decision = decide(aggregate)
            aggregate.mark_applied(message_id, digest)
            if is_new:
                if await self.insert(aggregate):
                    return self._saved(aggregate, decision)
                continue
            try:
                await self.save(aggregate)
                return self._saved(aggregate, decision)
            except Conflict:
                metrics.SAVE_CONFLICTS.labels(self.model.__name__).inc()
                # Jittered back-off: racing writers spread out instead of colliding again.
                await asyncio.sleep(random.uniform(0, 0.002 * (attempt + 1)))
        raise Conflict(f"{self.model.__name__} {aggregate_id}: too many concurrent writers")

    def _saved(self, aggregate: A, decision: T) -> Saved[A, T]:
        for listener in self._changed:
            listener(aggregate)
        return Saved(aggregate, decision)


Publish = Callable[[OutboxEntry], Awaitable[None]]

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

    @property
    def key(self) -> tuple[str, Any]:
        return (self.collection.full_name, self.doc["_id"])


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
    was a third of the writes, and it queued before the next step's commands. The cost:
    a crash in that window publishes those entries again once the claim expires, as a
    crash between the confirm and the removal always did.
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
        settle_seconds: float = 0.2,
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
        self, collection: AsyncCollection[Document], doc: Document, *, turn: Turn | None = None
    ) -> None:
        """Publish the events of a document saved holding this relay's claim (``hold``), as
        saved, then remove them and release the claim: what a pass does after its claim,
        without the read and the claim before it. In a task of its own: the saver answers
        without waiting for the broker's confirm (``finish`` waits for these on stop).

        ``turn``: the saver's own turns on the aggregate (``DocumentStore.mutate``). The
        removal waits for it, so that a change this process is making in the meantime is
        not the one that loses the race: the removal reads the document again instead,
        off the handler's path."""
        key = (collection.full_name, doc["_id"])
        task = asyncio.create_task(self._publish_held(collection, doc, turn))
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
            await self.settle_now()

    async def settle_now(self) -> None:
        """Remove every confirmed entry no save has folded yet: one ``bulk_write`` per
        collection, each document under its saver's turn (a change under way folds it
        instead). Never raises: a failure leaves the claims to expire, and a pass
        publishes those entries again."""
        records = sorted(self._unsettled.values(), key=lambda r: (r.key[0], str(r.key[1])))
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
        self, collection: AsyncCollection[Document], doc: Document, turn: Turn | None
    ) -> None:
        """Never raises: the save is done, and a failure leaves the document to the passes
        (after its back-off, or once its lease expires)."""
        done = RelayPass()
        try:
            await self._relay(collection, doc, done, turn, later=True)
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
        elif later and doc.get("version") is not None:
            self._settle_later(Unsettled(collection, doc, frozenset(sent), turn))
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
