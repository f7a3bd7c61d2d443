"""MongoDB storage patterns every service uses (DESIGN.md, Storage).

- One aggregate = one document, saved whole with an optimistic version check.
- The events a change produces travel **in the same document save** (``outbox``);
  the ``OutboxRelay`` (``shared.runtime.outbox``) claims the document (a lease, so that
  of N replicas one publishes it), publishes them with publisher confirms, then removes
  them. The claim usually travels in that save too, and the saving process publishes at
  once; the relay's passes publish what a crash, a failure or another replica's claim
  left.
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
import random
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar
from uuid import uuid4

from pydantic import BaseModel, ConfigDict, Field
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from shared.basics.errors import Conflict, Refused
from shared.contracts import REGISTRY, Event
from shared.runtime import metrics
from shared.runtime.inbox import MessageIdReused
from shared.runtime.logging import get_logger

if TYPE_CHECKING:
    from shared.runtime.outbox import OutboxRelay

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
        if not self.changing(aggregate_id) and not (
            self.relay is not None and self.relay.publishing(self.collection, aggregate_id)
        ):
            await self.find_ahead(aggregate_id)

    async def find_ahead(self, aggregate_id: str) -> Document | None:
        """The aggregate's document, read now (None: there is none). Within
        ``reading_ahead``, the first ``get`` of it takes this read instead of making its
        own, one store round trip later, unless this process changed it since."""
        doc = await self.collection.find_one({"_id": aggregate_id})
        kept = _READ_AHEAD.get()
        if kept is not None and not self.changing(aggregate_id):
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
            self.relay.publish_held(self.collection, doc, turn=self._turn, changing=self.changing)
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

    def changing(self, aggregate_id: str) -> bool:
        """Whether a change of the aggregate in this process holds its turn or waits for it
        (``mutate``)."""
        return aggregate_id in self._writing

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
